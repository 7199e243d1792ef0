package ec2

import (
	"bytes"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

// page is what one page of DescribeInstances gives, kept while the page
// stays the same: its instances' ids (for the duplicate check), the
// peers among them, and those skipped for want of an address.
type page struct {
	ids     []string
	peers   []bridge.Peer
	skipped []skipped
}

type skipped struct{ id, name string }

// derive turns a decoded page into its peers.
func (p *Provider) derive(reservations []types.Reservation) *page {
	pg := &page{}
	for _, r := range reservations {
		for _, in := range r.Instances {
			id := aws.ToString(in.InstanceId)
			if id == "" {
				continue // no instance to name or publish
			}
			pg.ids = append(pg.ids, id)
			// The server filters on the state already; an instance that
			// changed state between pages is no peer either.
			if in.State == nil || in.State.Name != types.InstanceStateNameRunning {
				continue
			}
			addr, ok := p.addressOf(in)
			if !ok {
				pg.skipped = append(pg.skipped, skipped{id: id, name: tag(in.Tags, p.labelTag)})
				continue
			}
			pg.peers = append(pg.peers, p.peer(in, addr))
		}
	}
	return pg
}

// pageShape is DescribeInstances' answer: every answer has a requestId
// of its own, and nextToken is opaque (it may be minted anew for the
// same position). Neither is news about the instances: both are left out
// of the digest, a page is known by its position in the listing, and
// the stub carries the answer's own token on.
var pageShape = platform.Shape{Volatile: volatile, Stub: stubOf}

var (
	requestIDOpen, requestIDClose = []byte("<requestId>"), []byte("</requestId>")
	tokenOpen, tokenClose         = []byte("<nextToken>"), []byte("</nextToken>")
)

// element returns the [start, end) offsets of the text of the first (or,
// last, the last) element opened by open in body; ok false without one.
// XML escapes < in text, so an element's tags cannot hide in another's
// text.
func element(body, open, close []byte, last bool) (span [2]int, ok bool) {
	var i int
	if last {
		i = bytes.LastIndex(body, open)
	} else {
		i = bytes.Index(body, open)
	}
	if i < 0 {
		return span, false
	}
	start := i + len(open)
	j := bytes.Index(body[start:], close)
	if j < 0 {
		return span, false
	}
	return [2]int{start, start + j}, true
}

// volatile is the requestId, which comes first, and the nextToken, which
// comes after the reservationSet.
func volatile(body []byte) [][2]int {
	var out [][2]int
	if id, ok := element(body, requestIDOpen, requestIDClose, false); ok {
		out = append(out, id)
	}
	if tok, ok := element(body, tokenOpen, tokenClose, true); ok {
		out = append(out, tok)
	}
	return out
}

// stubOf is the body the SDK decodes in place of an unchanged page: an
// empty reservationSet (an empty set, not a missing one) and the
// answer's own requestId and nextToken, as they came (still escaped).
func stubOf(body []byte) []byte {
	var b bytes.Buffer
	b.WriteString(`<?xml version="1.0" encoding="UTF-8"?>` + "\n" +
		`<DescribeInstancesResponse xmlns="http://ec2.amazonaws.com/doc/2016-11-15/"><requestId>`)
	if id, ok := element(body, requestIDOpen, requestIDClose, false); ok {
		b.Write(body[id[0]:id[1]])
	}
	b.WriteString(`</requestId><reservationSet/>`)
	if tok, ok := element(body, tokenOpen, tokenClose, true); ok && tok[1] > tok[0] {
		b.WriteString(`<nextToken>`)
		b.Write(body[tok[0]:tok[1]])
		b.WriteString(`</nextToken>`)
	}
	b.WriteString(`</DescribeInstancesResponse>`)
	return b.Bytes()
}
