package ec2

import (
	"context"
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// The fake credentials, and where the fake stands.
const (
	testKeyID        = bridgetest.AWSKeyID
	testSecret       = bridgetest.AWSSecret
	testSessionToken = bridgetest.AWSSessionToken
	testRegion       = bridgetest.AWSRegion
	ec2Namespace     = "http://ec2.amazonaws.com/doc/2016-11-15/"
)

// instance is one instance of the fake account.
type instance struct {
	ID, Type, AZ, VPC string
	Private, Public   string
	State             string // running unless set
	Tags              [][2]string
	// IPv6 is on the primary network interface (ipv6AddressesSet), as
	// EC2 reports it; the instance-level field stays empty.
	IPv6 []string
	// Reservation groups instances launched together; empty: its own.
	Reservation string
}

// fakeEC2 answers DescribeInstances as EC2 does over its Query protocol:
// a form-encoded POST with Action and Version, signed with SigV4;
// Filter.N.Name and Filter.N.Value.M (tag:KEY, tag-key,
// availability-zone, vpc-id, instance-state-name; * and ? wildcards);
// MaxResults (5 to 1000) and NextToken. It answers with EC2's XML, and
// its <Response><Errors> format for errors.
type fakeEC2 struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	instances []instance
	// pageSize caps a page below MaxResults, to make pages of few
	// instances; 0: MaxResults.
	pageSize int
	requests []url.Values
	headers  []http.Header
	// fail, when it returns a status, answers the request (the n-th,
	// from 1; page from 1) with it and body instead.
	fail func(n, page int) (status int, body string)
	// empty answers the next so many requests with no reservations.
	empty int
	// hook, when set, answers every request instead, outside the lock
	// (a redirect, an answer that never ends).
	hook http.HandlerFunc
}

func newFakeEC2(t testing.TB, instances []instance) *fakeEC2 {
	f := &fakeEC2{t: t, instances: instances}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeEC2) set(fn func(f *fakeEC2)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeEC2) requestLog() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]url.Values(nil), f.requests...)
}

// sigV4 is the Authorization header of a SigV4-signed EC2 request made
// with the test credentials.
var sigV4 = regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=` + testKeyID + `/\d{8}/` + testRegion +
	`/ec2/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$`)

func (f *fakeEC2) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if hook := f.hook; hook != nil {
		f.mu.Unlock()
		hook(w, r)
		return
	}
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		f.fault(w, http.StatusBadRequest, "InvalidAction", "The action or operation requested is not valid: not a form POST.")
		return
	}
	if err := r.ParseForm(); err != nil {
		f.fault(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	q := r.PostForm
	f.requests = append(f.requests, q)
	f.headers = append(f.headers, r.Header.Clone())
	if !sigV4.MatchString(r.Header.Get("Authorization")) || r.Header.Get("X-Amz-Date") == "" {
		f.fault(w, http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials")
		return
	}
	if q.Get("Action") != "DescribeInstances" || q.Get("Version") != "2016-11-15" {
		f.fault(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", q.Get("Action")))
		return
	}
	size, err := strconv.Atoi(q.Get("MaxResults"))
	if q.Has("MaxResults") && (err != nil || size < 5 || size > 1000) {
		f.fault(w, http.StatusBadRequest, "InvalidParameterValue", "Value for parameter maxResults is invalid: must be between 5 and 1000.")
		return
	}
	if !q.Has("MaxResults") {
		size = 1 << 30 // EC2 answers everything at once without MaxResults
	}
	if f.pageSize > 0 {
		size = min(size, f.pageSize)
	}
	offset := 0
	if tok := q.Get("NextToken"); tok != "" {
		if offset, err = strconv.Atoi(strings.TrimPrefix(tok, "page-token-")); err != nil || !strings.HasPrefix(tok, "page-token-") {
			f.fault(w, http.StatusBadRequest, "InvalidParameterValue", "The token is invalid: "+tok)
			return
		}
	}
	if f.fail != nil {
		if status, body := f.fail(len(f.requests), offset/size+1); status != 0 {
			w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
	}
	filters, err := parseFilters(q)
	if err != nil {
		f.fault(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
		return
	}
	var matched []instance
	if f.empty > 0 {
		f.empty--
	} else {
		for _, in := range f.instances {
			if filters.match(in) {
				matched = append(matched, in)
			}
		}
	}
	resp := describeResponse{RequestID: fmt.Sprintf("req-%d", len(f.requests))}
	end := min(offset+size, len(matched))
	if offset < end {
		resp.Reservations.Items = reservations(matched[offset:end])
	}
	if end < len(matched) {
		resp.NextToken = "page-token-" + strconv.Itoa(end)
	}
	f.reply(w, http.StatusOK, resp)
}

func (f *fakeEC2) reply(w http.ResponseWriter, status int, v any) {
	b, err := xml.MarshalIndent(v, "", " ")
	if err != nil {
		f.t.Errorf("fake EC2: %v", err)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, xml.Header)
	w.Write(b)
}

func (f *fakeEC2) fault(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, errorXML(code, message))
}

// errorXML is an EC2 error answer.
func errorXML(code, message string) string {
	var msg strings.Builder
	xml.EscapeText(&msg, []byte(message))
	return fmt.Sprintf(`<?xml version="1.0" encoding="UTF-8"?>
<Response><Errors><Error><Code>%s</Code><Message>%s</Message></Error></Errors><RequestID>ea966190-f9aa-478e-9ede-example</RequestID></Response>`,
		code, msg.String())
}

// filterSet is the filters of one request: each must match (AND), by one
// of its values (OR).
type filterSet map[string][]string

func parseFilters(q url.Values) (filterSet, error) {
	fs := filterSet{}
	for n := 1; q.Has(fmt.Sprintf("Filter.%d.Name", n)); n++ {
		name := q.Get(fmt.Sprintf("Filter.%d.Name", n))
		switch {
		case strings.HasPrefix(name, "tag:"), name == "tag-key", name == "availability-zone",
			name == "vpc-id", name == "instance-state-name":
		default:
			return nil, fmt.Errorf("The filter '%s' is invalid", name)
		}
		var values []string
		for m := 1; q.Has(fmt.Sprintf("Filter.%d.Value.%d", n, m)); m++ {
			values = append(values, q.Get(fmt.Sprintf("Filter.%d.Value.%d", n, m)))
		}
		if len(values) == 0 {
			return nil, fmt.Errorf("The filter '%s' has no values", name)
		}
		fs[name] = values
	}
	return fs, nil
}

func (fs filterSet) match(in instance) bool {
	for name, values := range fs {
		var have []string
		switch {
		case strings.HasPrefix(name, "tag:"):
			for _, t := range in.Tags {
				if t[0] == strings.TrimPrefix(name, "tag:") {
					have = append(have, t[1])
				}
			}
		case name == "tag-key":
			for _, t := range in.Tags {
				have = append(have, t[0])
			}
		case name == "availability-zone":
			have = []string{in.AZ}
		case name == "vpc-id":
			have = []string{in.VPC}
		case name == "instance-state-name":
			have = []string{in.state()}
		}
		if !anyMatch(values, have) {
			return false
		}
	}
	return true
}

func anyMatch(patterns, have []string) bool {
	for _, p := range patterns {
		for _, h := range have {
			if ok, _ := path.Match(p, h); ok {
				return true
			}
		}
	}
	return false
}

func (in instance) state() string {
	if in.State == "" {
		return "running"
	}
	return in.State
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

// reservations groups instances into EC2's reservationSet, in order.
func reservations(ins []instance) []xmlReservation {
	var out []xmlReservation
	for _, in := range ins {
		rid := in.Reservation
		if rid == "" {
			rid = "r-" + strings.TrimPrefix(in.ID, "i-")
		}
		if len(out) == 0 || out[len(out)-1].ReservationID != rid {
			out = append(out, xmlReservation{ReservationID: rid, OwnerID: "123456789012"})
		}
		last := &out[len(out)-1]
		last.Instances = append(last.Instances, toXML(in))
	}
	return out
}

func toXML(in instance) xmlInstance {
	x := xmlInstance{
		InstanceID: in.ID, ImageID: "ami-0abcdef1234567890", InstanceType: in.Type,
		PrivateIP: in.Private, PublicIP: in.Public, VpcID: in.VPC, SubnetID: "subnet-0123",
		AZ: in.AZ, StateName: in.state(), StateCode: stateCodes[in.state()],
	}
	for _, t := range in.Tags {
		x.Tags = append(x.Tags, xmlTag{Key: t[0], Value: t[1]})
	}
	if in.VPC != "" {
		nic := xmlNIC{ID: "eni-" + strings.TrimPrefix(in.ID, "i-"), PrivateIP: in.Private, DeviceIndex: 0}
		for _, a := range in.IPv6 {
			nic.IPv6 = append(nic.IPv6, xmlIPv6{Address: a})
		}
		x.NICs = []xmlNIC{nic}
	}
	return x
}

type describeResponse struct {
	XMLName   xml.Name `xml:"http://ec2.amazonaws.com/doc/2016-11-15/ DescribeInstancesResponse"`
	RequestID string   `xml:"requestId"`
	// Reservations is always there, as EC2 sends <reservationSet/> for
	// no instances: an answer without it is no listing.
	Reservations struct {
		Items []xmlReservation `xml:"item"`
	} `xml:"reservationSet"`
	NextToken string `xml:"nextToken,omitempty"`
}

type xmlReservation struct {
	ReservationID string        `xml:"reservationId"`
	OwnerID       string        `xml:"ownerId"`
	Instances     []xmlInstance `xml:"instancesSet>item"`
}

type xmlInstance struct {
	InstanceID   string   `xml:"instanceId"`
	ImageID      string   `xml:"imageId"`
	StateCode    int      `xml:"instanceState>code"`
	StateName    string   `xml:"instanceState>name"`
	InstanceType string   `xml:"instanceType"`
	AZ           string   `xml:"placement>availabilityZone"`
	SubnetID     string   `xml:"subnetId,omitempty"`
	VpcID        string   `xml:"vpcId,omitempty"`
	PrivateIP    string   `xml:"privateIpAddress,omitempty"`
	PublicIP     string   `xml:"ipAddress,omitempty"`
	NICs         []xmlNIC `xml:"networkInterfaceSet>item"`
	Tags         []xmlTag `xml:"tagSet>item"`
}

type xmlNIC struct {
	ID          string    `xml:"networkInterfaceId"`
	PrivateIP   string    `xml:"privateIpAddress,omitempty"`
	DeviceIndex int       `xml:"attachment>deviceIndex"`
	IPv6        []xmlIPv6 `xml:"ipv6AddressesSet>item"`
}

type xmlIPv6 struct {
	Address string `xml:"ipv6Address"`
}

type xmlTag struct {
	Key   string `xml:"key"`
	Value string `xml:"value"`
}

func awsEnv(t testing.TB, endpoint string) { bridgetest.AWSEnv(t, endpoint) }

// newProvider returns a provider reading the fake through the SDK's
// default chain, and the buffer its log goes to.
func newProvider(t testing.TB, f *fakeEC2, opts Options) (*Provider, *bridgetest.Buffer) {
	t.Helper()
	awsEnv(t, f.srv.URL)
	logs := &bridgetest.Buffer{}
	opts.Logger = testLogger(logs)
	p, err := NewContext(context.Background(), opts)
	if err != nil {
		t.Fatal(err)
	}
	return p, logs
}

// makeInstances returns n running instances named web-0, web-1, ... with
// private addresses 10.0.x.y, spread over two zones, three to a
// reservation.
func makeInstances(n int) []instance {
	out := make([]instance, n)
	for i := range out {
		out[i] = instance{
			ID: fmt.Sprintf("i-%017x", i), Type: "t3.micro", AZ: []string{"eu-west-1a", "eu-west-1b"}[i%2],
			VPC: "vpc-0aa", Private: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1),
			Tags:        [][2]string{{"Name", fmt.Sprintf("web-%d", i)}, {"app", "web"}},
			Reservation: fmt.Sprintf("r-%017x", i/3),
		}
	}
	return out
}
