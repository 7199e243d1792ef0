// Package ec2test is a stand-in for EC2's DescribeInstances on loopback,
// for the tests of every provider that reads EC2 through the AWS SDK (ec2
// itself, and ecs for the instances behind its container instances). It
// speaks EC2's Query protocol and XML, checks the SigV4 Authorization
// header, pages by MaxResults and NextToken, filters as EC2 does, and
// answers errors in EC2's <Response><Errors> format.
package ec2test

import (
	"encoding/xml"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/peerbridge/peerbridge/bridge/bridgetest"
)

// Namespace is the XML namespace of EC2's answers (API version 2016-11-15).
const Namespace = "http://ec2.amazonaws.com/doc/2016-11-15/"

// Instance is one instance of the fake account.
type Instance struct {
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

// Server answers DescribeInstances as EC2 does over its Query protocol:
// a form-encoded POST with Action and Version, signed with SigV4 with the
// bridgetest credentials; InstanceId.N, Filter.N.Name and
// Filter.N.Value.M (tag:KEY, tag-key, availability-zone, vpc-id,
// instance-state-name; * and ? wildcards); MaxResults (5 to 1000) and
// NextToken. It answers with EC2's XML, and its <Response><Errors>
// format for errors.
//
// The exported fields may be changed under Set once the server runs.
type Server struct {
	t   testing.TB
	srv *httptest.Server

	mu        sync.Mutex
	Instances []Instance
	// PageSize caps a page below MaxResults, to make pages of few
	// instances; 0: MaxResults.
	PageSize int
	// Requests and Headers are every request's form and headers, in order.
	Requests []url.Values
	Headers  []http.Header
	// Fail, when it returns a status, answers the request (the n-th,
	// from 1; page from 1) with it and body instead. It runs under the
	// server's lock: it may read the fields, not call Set.
	Fail func(n, page int) (status int, body string)
	// Empty answers the next so many requests with no reservations.
	Empty int
	// Hook, when set, answers every request instead, outside the lock
	// (a redirect, an answer that never ends).
	Hook http.HandlerFunc
}

// New starts a server holding instances; the test's cleanup stops it.
func New(t testing.TB, instances []Instance) *Server {
	f := &Server{t: t, Instances: instances}
	f.srv = httptest.NewServer(http.HandlerFunc(f.serve))
	t.Cleanup(f.srv.Close)
	return f
}

// URL is the endpoint, for AWS_ENDPOINT_URL_EC2.
func (f *Server) URL() string { return f.srv.URL }

// ServeHTTP answers as the server, for a test that serves it behind a
// handler of its own.
func (f *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { f.serve(w, r) }

// Close stops the server: later requests get no answer.
func (f *Server) Close() { f.srv.Close() }

// Set changes the server's state under its lock.
func (f *Server) Set(fn func(f *Server)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

// RequestLog returns the forms of every request so far.
func (f *Server) RequestLog() []url.Values {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.Requests)
}

// SigV4 matches the Authorization header of a request signed with the
// bridgetest credentials for service (ec2, ecs) in bridgetest.AWSRegion.
func SigV4(service string) *regexp.Regexp {
	return regexp.MustCompile(`^AWS4-HMAC-SHA256 Credential=` + regexp.QuoteMeta(bridgetest.AWSKeyID) + `/\d{8}/` +
		regexp.QuoteMeta(bridgetest.AWSRegion) + `/` + regexp.QuoteMeta(service) +
		`/aws4_request, SignedHeaders=[a-z0-9;-]+, Signature=[0-9a-f]{64}$`)
}

var sigV4 = SigV4("ec2")

func (f *Server) serve(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	if hook := f.Hook; hook != nil {
		f.mu.Unlock()
		hook(w, r)
		return
	}
	defer f.mu.Unlock()
	if r.Method != http.MethodPost || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/x-www-form-urlencoded") {
		fault(w, http.StatusBadRequest, "InvalidAction", "The action or operation requested is not valid: not a form POST.")
		return
	}
	if err := r.ParseForm(); err != nil {
		fault(w, http.StatusBadRequest, "MalformedQueryString", err.Error())
		return
	}
	q := r.PostForm
	f.Requests = append(f.Requests, q)
	f.Headers = append(f.Headers, r.Header.Clone())
	if !sigV4.MatchString(r.Header.Get("Authorization")) || r.Header.Get("X-Amz-Date") == "" {
		fault(w, http.StatusUnauthorized, "AuthFailure", "AWS was not able to validate the provided access credentials")
		return
	}
	if q.Get("Action") != "DescribeInstances" || q.Get("Version") != "2016-11-15" {
		fault(w, http.StatusBadRequest, "InvalidAction", fmt.Sprintf("The action %s is not valid for this web service.", q.Get("Action")))
		return
	}
	ids := listParam(q, "InstanceId")
	size, err := strconv.Atoi(q.Get("MaxResults"))
	if q.Has("MaxResults") && len(ids) > 0 {
		// EC2's rule: MaxResults cannot be combined with instance ids.
		fault(w, http.StatusBadRequest, "InvalidParameterCombination", "The parameter instancesSet cannot be used with the parameter maxResults")
		return
	}
	if q.Has("MaxResults") && (err != nil || size < 5 || size > 1000) {
		fault(w, http.StatusBadRequest, "InvalidParameterValue", "Value for parameter maxResults is invalid: must be between 5 and 1000.")
		return
	}
	if !q.Has("MaxResults") {
		size = 1 << 30 // EC2 answers everything at once without MaxResults
	}
	if f.PageSize > 0 {
		size = min(size, f.PageSize)
	}
	offset := 0
	if tok := q.Get("NextToken"); tok != "" {
		if offset, err = strconv.Atoi(strings.TrimPrefix(tok, "page-token-")); err != nil || !strings.HasPrefix(tok, "page-token-") {
			fault(w, http.StatusBadRequest, "InvalidParameterValue", "The token is invalid: "+tok)
			return
		}
	}
	if f.Fail != nil {
		if status, body := f.Fail(len(f.Requests), offset/size+1); status != 0 {
			w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
			w.WriteHeader(status)
			fmt.Fprint(w, body)
			return
		}
	}
	filters, err := parseFilters(q)
	if err != nil {
		fault(w, http.StatusBadRequest, "InvalidParameterValue", err.Error())
		return
	}
	for _, id := range ids {
		// EC2 fails the whole call for an id it does not know.
		if !slices.ContainsFunc(f.Instances, func(in Instance) bool { return in.ID == id }) {
			fault(w, http.StatusBadRequest, "InvalidInstanceID.NotFound", fmt.Sprintf("The instance ID '%s' does not exist", id))
			return
		}
	}
	var matched []Instance
	if f.Empty > 0 {
		f.Empty--
	} else {
		for _, in := range f.Instances {
			if filters.match(in) && (len(ids) == 0 || slices.Contains(ids, in.ID)) {
				matched = append(matched, in)
			}
		}
	}
	resp := describeResponse{RequestID: fmt.Sprintf("req-%d", len(f.Requests))}
	end := min(offset+size, len(matched))
	if offset < end {
		resp.Reservations.Items = reservations(matched[offset:end])
	}
	if end < len(matched) {
		resp.NextToken = "page-token-" + strconv.Itoa(end)
	}
	f.reply(w, http.StatusOK, resp)
}

// listParam reads a Query protocol list: name.1, name.2, ...
func listParam(q url.Values, name string) []string {
	var out []string
	for n := 1; q.Has(fmt.Sprintf("%s.%d", name, n)); n++ {
		out = append(out, q.Get(fmt.Sprintf("%s.%d", name, n)))
	}
	return out
}

func (f *Server) reply(w http.ResponseWriter, status int, v any) {
	b, err := xml.MarshalIndent(v, "", " ")
	if err != nil {
		f.t.Errorf("fake EC2: %v", err)
	}
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, xml.Header)
	w.Write(b)
}

func fault(w http.ResponseWriter, status int, code, message string) {
	w.Header().Set("Content-Type", "text/xml;charset=UTF-8")
	w.WriteHeader(status)
	fmt.Fprint(w, ErrorXML(code, message))
}

// ErrorXML is an EC2 error answer.
func ErrorXML(code, message string) string {
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
		values := listParam(q, fmt.Sprintf("Filter.%d.Value", n))
		if len(values) == 0 {
			return nil, fmt.Errorf("The filter '%s' has no values", name)
		}
		fs[name] = values
	}
	return fs, nil
}

func (fs filterSet) match(in Instance) bool {
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

func (in Instance) state() string {
	if in.State == "" {
		return "running"
	}
	return in.State
}

var stateCodes = map[string]int{"pending": 0, "running": 16, "shutting-down": 32, "terminated": 48, "stopping": 64, "stopped": 80}

// reservations groups instances into EC2's reservationSet, in order.
func reservations(ins []Instance) []xmlReservation {
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

func toXML(in Instance) xmlInstance {
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

// PageXML is a DescribeInstances answer holding instances, as the server
// writes its pages: for a Fail func that answers a page of its own.
func PageXML(requestID string, instances []Instance, nextToken string) string {
	var resp describeResponse
	resp.RequestID = requestID
	resp.Reservations.Items = reservations(instances)
	resp.NextToken = nextToken
	b, err := xml.Marshal(resp)
	if err != nil {
		panic(err) // the types marshal
	}
	return xml.Header + string(b)
}
