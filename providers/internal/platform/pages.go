package platform

import (
	"bytes"
	"context"
	"errors"
	"hash/maphash"
	"io"
	"net/http"
	"sync"
)

// Pages remembers, for every page of a provider's last complete listing,
// a digest of the page's body and what the provider derived from it (its
// peers after the filters, the ids it saw, ...: R). A steady poll of a
// big fleet then costs the transfer and a hash of each page, not the
// decoding of bodies that did not change: decoding 50 pages of droplet
// JSON was nearly all of a steady poll's CPU.
//
// The digest is a maphash of the body with a per-process seed, and the
// body's length: the memory is in this process only, and nobody outside
// it can aim at a collision without the seed.
//
// The remembered pages are replaced only by a listing that completed
// (Listing.Done), so a listing that failed half way never mixes pages of
// two listings, and a page is only ever compared with the same request
// (the same key: page number, token position) of the last one.
type Pages[R any] struct {
	seed  maphash.Seed
	shape Shape

	mu   sync.Mutex
	last map[string]Page[R]
}

// Page is what one page of a complete listing gave.
type Page[R any] struct {
	sum  uint64
	size int
	// stub is a small body the SDK decodes instead of an unchanged page:
	// an empty list with the page's paging information (links, meta,
	// next token), so the SDK's call and the provider's paging go on as
	// they would with the page itself.
	stub   []byte
	result R
}

// NewPages returns an empty memory: the first listing decodes every page.
func NewPages[R any]() *Pages[R] {
	return &Pages[R]{seed: maphash.MakeSeed()}
}

// Shape says what of an API's answers differs from answer to answer
// without being news: EC2 puts a fresh requestId in every answer, and
// its paging tokens are opaque.
type Shape struct {
	// Volatile returns the parts of body left out of the digest: the
	// [start, end) byte offsets of each, in order, not overlapping.
	Volatile func(body []byte) [][2]int
	// Stub makes the stub for an unchanged body from the body itself
	// (its volatile parts: the token to the next page), instead of the
	// stub kept with the page; nil when it cannot.
	Stub func(body []byte) []byte
}

// NewShapedPages is NewPages for answers of that shape.
func NewShapedPages[R any](shape Shape) *Pages[R] {
	return &Pages[R]{seed: maphash.MakeSeed(), shape: shape}
}

// digest is the body's hash and length, its volatile parts left out.
func (p *Pages[R]) digest(body []byte) (sum uint64, size int) {
	if p.shape.Volatile == nil {
		return maphash.Bytes(p.seed, body), len(body)
	}
	var h maphash.Hash
	h.SetSeed(p.seed)
	at := 0
	for _, v := range p.shape.Volatile(body) {
		if v[0] < at || v[1] < v[0] || v[1] > len(body) {
			continue // out of order: digested as it is
		}
		h.Write(body[at:v[0]])
		h.WriteByte(0) // a volatile part was here
		size += v[0] - at + 1
		at = v[1]
	}
	h.Write(body[at:])
	return h.Sum64(), size + len(body) - at
}

// Begin starts a listing. A provider's polls do not overlap; a listing
// that overlaps another still only ever sees complete listings.
func (p *Pages[R]) Begin() *Listing[R] {
	p.mu.Lock()
	last := p.last
	p.mu.Unlock()
	return &Listing[R]{pages: p, last: last, next: make(map[string]Page[R], len(last))}
}

// Listing is one pass over a listing's pages.
type Listing[R any] struct {
	pages *Pages[R]
	last  map[string]Page[R] // the last complete listing's, read only
	next  map[string]Page[R] // this listing's so far
}

// Done makes this listing's pages the ones later listings compare with.
// Call it only when every page was listed and found consistent.
func (l *Listing[R]) Done() {
	l.pages.mu.Lock()
	l.pages.last = l.next
	l.pages.mu.Unlock()
}

// Request returns a context for the SDK call that fetches the page known
// as key, and the Fetch that learns what its answer was. The transport
// (SkipUnchanged) finds the Fetch in the request's context.
func (l *Listing[R]) Request(ctx context.Context, key string) (context.Context, *Fetch[R]) {
	f := &Fetch[R]{l: l, key: key}
	return context.WithValue(ctx, probeKey{}, prober(f)), f
}

// Fetch is what the transport saw of one page's answer.
type Fetch[R any] struct {
	l   *Listing[R]
	key string

	mu     sync.Mutex // the transport and the provider are different goroutines at times
	probed bool
	sum    uint64
	size   int
	hit    *Page[R]
}

// probe digests a 2xx answer's body and returns the stub to decode
// instead when the body is that of the same page of the last complete
// listing; nil otherwise.
func (f *Fetch[R]) probe(body []byte) []byte {
	pages := f.l.pages
	sum, size := pages.digest(body)
	f.mu.Lock()
	defer f.mu.Unlock()
	f.probed, f.sum, f.size, f.hit = true, sum, size, nil
	p, ok := f.l.last[f.key]
	if !ok || p.sum != sum || p.size != size {
		return nil
	}
	stub := p.stub
	if pages.shape.Stub != nil {
		stub = pages.shape.Stub(body)
	}
	if stub != nil {
		f.hit = &p
	}
	return stub
}

// Unchanged returns what the page gave on the last complete listing when
// its body is byte for byte the same; the SDK then decoded the stub, not
// the page. The page is kept for this listing as it is.
func (f *Fetch[R]) Unchanged() (R, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.hit == nil {
		var zero R
		return zero, false
	}
	f.l.next[f.key] = *f.hit
	return f.hit.result, true
}

// Keep records what a decoded page gave, and the stub to decode in its
// place while it stays unchanged (nil with a Shape that makes stubs). A
// page whose body the transport did not see (no 2xx answer, no
// transport in place) is not kept.
func (f *Fetch[R]) Keep(result R, stub []byte) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.probed || (stub == nil && f.l.pages.shape.Stub == nil) {
		return
	}
	f.l.next[f.key] = Page[R]{sum: f.sum, size: f.size, stub: stub, result: result}
}

type probeKey struct{}

type prober interface{ probe(body []byte) []byte }

// SkipUnchanged returns a transport (next; nil means
// http.DefaultTransport) that reads the whole body of a 2xx answer to a
// request made with a Listing's context, and hands the SDK the page's
// stub instead of a body that did not change since the last complete
// listing. Put it above LimitBodies, so that what it reads is capped;
// requests without a Listing's context pass untouched. A body that fails
// to read fails the SDK's read the same way, after the bytes that came.
func SkipUnchanged(next http.RoundTripper) http.RoundTripper {
	if next == nil {
		next = http.DefaultTransport
	}
	return &skipTransport{next: next}
}

type skipTransport struct{ next http.RoundTripper }

func (t *skipTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(r)
	return Substitute(r, resp, err)
}

// Substitute is SkipUnchanged's work on one answer, for the clients that
// are no RoundTripper (the AWS SDK's HTTPClient): it returns resp with
// the stub for its body when the body did not change, or with the body
// read into memory.
func Substitute(r *http.Request, resp *http.Response, err error) (*http.Response, error) {
	pr, ok := r.Context().Value(probeKey{}).(prober)
	if err != nil || !ok || resp == nil || resp.Body == nil || resp.StatusCode < 200 || resp.StatusCode > 299 {
		return resp, err
	}
	buf := bodies.Get().(*bytes.Buffer)
	buf.Reset()
	if n := resp.ContentLength; n > 0 && n < 64<<20 {
		buf.Grow(int(n) + 1) // the cap beneath still bounds what is read
	}
	_, rerr := buf.ReadFrom(resp.Body)
	resp.Body.Close()
	if rerr != nil {
		body := bytes.Clone(buf.Bytes())
		bodies.Put(buf)
		resp.Body = io.NopCloser(io.MultiReader(bytes.NewReader(body), errReader{rerr}))
		return resp, nil
	}
	if stub := pr.probe(buf.Bytes()); stub != nil {
		bodies.Put(buf)
		resp.ContentLength = int64(len(stub))
		resp.Header = resp.Header.Clone()
		resp.Header.Del("Content-Length")
		resp.Body = io.NopCloser(bytes.NewReader(stub))
		return resp, nil
	}
	resp.Body = &pooledBody{buf: buf}
	return resp, nil
}

// bodies are the buffers pages are read into: a steady poll of a big
// fleet reads megabytes it then drops, and fresh buffers for them were
// most of its garbage.
var bodies = sync.Pool{New: func() any { return new(bytes.Buffer) }}

// pooledBody hands a read body on, and its buffer back to the pool when
// the SDK closes it: the SDKs read a body into buffers of their own.
type pooledBody struct {
	mu  sync.Mutex
	buf *bytes.Buffer
}

func (b *pooledBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf == nil {
		return 0, errors.New("read of a closed body")
	}
	return b.buf.Read(p)
}

func (b *pooledBody) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.buf != nil {
		bodies.Put(b.buf)
		b.buf = nil
	}
	return nil
}

type errReader struct{ err error }

func (e errReader) Read([]byte) (int, error) { return 0, e.err }
