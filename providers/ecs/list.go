package ecs

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2"
	ec2types "github.com/aws/aws-sdk-go-v2/service/ec2/types"
	"github.com/aws/aws-sdk-go-v2/service/ecs"
	"github.com/aws/aws-sdk-go-v2/service/ecs/types"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/internal/awsapi"
	"github.com/peerbridge/peerbridge/providers/internal/platform"
)

const (
	// pageSize is the most ListTasks returns a page.
	pageSize = 100
	// batchSize is the most tasks DescribeTasks, and container instances
	// DescribeContainerInstances, take a call; also the instance ids of
	// one DescribeInstances call.
	batchSize = 100
	// maxPages stops a listing whose next tokens never end: 1,000 pages
	// are 100,000 tasks, far past ECS's 5,000 tasks a service.
	maxPages = 1000
)

// What ECS says of a task.
const (
	statusRunning  = "RUNNING"
	eniAttachment  = "ElasticNetworkInterface"
	detailPrivate4 = "privateIPv4Address"
	detailIPv6     = "ipv6Address"
)

// instanceAddrs are the addresses of a container instance's EC2 instance.
type instanceAddrs struct {
	private, ipv6 netip.Addr
}

// poll is one listing: tasks, then the container instances and EC2
// instances behind bridge and host tasks.
func (p *Provider) poll(ctx context.Context) ([]bridge.Peer, error) {
	if err := p.credentials(ctx); err != nil {
		return nil, err
	}
	arns, err := p.listTasks(ctx)
	if err != nil {
		return nil, err
	}
	pages, err := p.describeTasks(ctx, arns)
	if err != nil {
		return nil, err
	}
	var ciARNs []string
	for _, pg := range pages {
		for _, c := range pg.cands {
			if c.ci != "" && !slices.Contains(ciARNs, c.ci) {
				ciARNs = append(ciARNs, c.ci)
			}
		}
	}
	hosts, err := p.hostAddrs(ctx, ciARNs)
	if err != nil {
		return nil, err
	}
	peers := make([]bridge.Peer, 0, len(arns))
	for _, pg := range pages {
		for _, c := range pg.cands {
			if pe, ok := p.peer(c, hosts); ok {
				peers = append(peers, pe)
			}
		}
	}
	return peers, nil
}

// listTasks follows nextToken from the first page until there is none.
// A task listed twice means the pages disagree.
func (p *Provider) listTasks(ctx context.Context) ([]string, error) {
	in := &ecs.ListTasksInput{
		Cluster: aws.String(p.opts.Cluster), DesiredStatus: types.DesiredStatusRunning,
		MaxResults: aws.Int32(pageSize),
	}
	if p.opts.Service != "" {
		// ListTasks filters by the service's name; of an ARN
		// (service/cluster/name or service/name), the last part.
		in.ServiceName = aws.String(p.opts.Service[strings.LastIndexByte(p.opts.Service, '/')+1:])
	} else {
		in.Family = aws.String(p.opts.Family)
	}
	pager := ecs.NewListTasksPaginator(p.ecs, in)
	var arns []string
	seen := map[string]bool{}
	tokens := map[string]bool{}
	for page := 1; pager.HasMorePages(); page++ {
		if page > maxPages {
			return nil, fmt.Errorf("listing tasks: more than %d pages", maxPages)
		}
		out, err := pager.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("listing tasks page %d: %w", page, awsapi.Classify(err, awsapi.ECSCodes))
		}
		for _, a := range out.TaskArns {
			if seen[a] {
				return nil, fmt.Errorf("listing tasks page %d: %w: task %s listed twice", page, bridge.ErrInconsistentListing, taskID(a))
			}
			seen[a] = true
			arns = append(arns, a)
		}
		if t := aws.ToString(out.NextToken); t != "" {
			// A token seen before would loop until the poll times out.
			if tokens[t] {
				return nil, platform.Transient(fmt.Errorf("listing tasks page %d: nextToken repeats an earlier page's", page))
			}
			tokens[t] = true
		}
	}
	return arns, nil
}

// describeTasks describes every listed task, 100 a call. Every task
// listed must come back once: a failure in an answer (a task that
// stopped and was forgotten between the calls, a cluster gone) is no
// news, like any failed call. An answer byte for byte that of the same
// call of the last complete listing is not decoded again
// (platform.Pages): the SDK decodes an empty answer, and the call's
// tasks are the ones it gave then.
func (p *Provider) describeTasks(ctx context.Context, arns []string) ([]*taskPage, error) {
	pages := make([]*taskPage, 0, (len(arns)+batchSize-1)/batchSize)
	described := 0
	seen := make(map[string]bool, len(arns))
	listing := p.pages.Begin()
	for start := 0; start < len(arns); start += batchSize {
		batch := arns[start:min(start+batchSize, len(arns))]
		pctx, fetch := listing.Request(ctx, strconv.Itoa(start))
		out, err := p.ecs.DescribeTasks(pctx, &ecs.DescribeTasksInput{Cluster: aws.String(p.opts.Cluster), Tasks: batch})
		if err != nil {
			return nil, fmt.Errorf("describing tasks %d to %d: %w", start+1, start+len(batch), awsapi.Classify(err, awsapi.ECSCodes))
		}
		if err := failures("describing tasks", out.Failures); err != nil {
			return nil, err
		}
		pg, ok := fetch.Unchanged()
		if !ok {
			p.decoded.Add(1)
			pg = p.derive(out.Tasks)
			fetch.Keep(pg, emptyDescription)
		}
		for _, a := range pg.arns {
			if seen[a] {
				return nil, fmt.Errorf("describing tasks: %w: task %s described twice", bridge.ErrInconsistentListing, taskID(a))
			}
			if !slices.Contains(batch, a) {
				return nil, platform.Transient(fmt.Errorf("describing tasks: task %q was not asked for", a))
			}
			seen[a] = true
		}
		described += len(pg.arns)
		pages = append(pages, pg)
	}
	if described != len(arns) {
		return nil, platform.Transient(fmt.Errorf("describing tasks: %d of %d listed tasks described, without a failure", described, len(arns)))
	}
	listing.Done()
	return pages, nil
}

// emptyDescription is what the SDK decodes in place of a DescribeTasks
// answer that did not change: no tasks, no failures.
var emptyDescription = []byte(`{"failures":[],"tasks":[]}`)

// taskPage is what one DescribeTasks answer gives, kept while it stays
// the same: the tasks described (for the checks across answers), and the
// running, healthy ones as peers to be.
type taskPage struct {
	arns  []string
	cands []candidate
}

// candidate is a running, healthy task, as far as its own description
// makes it a peer: an awsvpc task's peer is whole; a bridge or host
// task's lacks the address of its container instance's EC2 instance.
type candidate struct {
	peer bridge.Peer
	// ci is the container instance whose host's address the peer takes,
	// "" for an awsvpc task.
	ci string
	// unmapped: a bridge task without a host port for the container port.
	unmapped bool
}

// derive turns one DescribeTasks answer into its page.
func (p *Provider) derive(tasks []types.Task) *taskPage {
	pg := &taskPage{arns: make([]string, 0, len(tasks))}
	for _, t := range tasks {
		pg.arns = append(pg.arns, aws.ToString(t.TaskArn))
		if aws.ToString(t.LastStatus) != statusRunning {
			continue // PENDING, ACTIVATING, DEACTIVATING, STOPPING, STOPPED, ...
		}
		if t.HealthStatus != types.HealthStatusHealthy && t.HealthStatus != types.HealthStatusUnknown && t.HealthStatus != "" {
			continue // UNHEALTHY: its container health check fails
		}
		pg.cands = append(pg.cands, p.candidate(t))
	}
	return pg
}

// failures turns an answer's failures into a transient error: the
// listing moved under the poll, and the next one will see it settled.
func failures(what string, fs []types.Failure) error {
	if len(fs) == 0 {
		return nil
	}
	f := fs[0]
	msg := fmt.Sprintf("%s: %d failures, the first %s: %s", what, len(fs), aws.ToString(f.Arn), aws.ToString(f.Reason))
	if d := aws.ToString(f.Detail); d != "" {
		msg += " (" + d + ")"
	}
	return platform.Transient(fmt.Errorf("%s", msg))
}

// hostAddrs returns the addresses of the EC2 instances behind the given
// container instances: from the caches, or DescribeContainerInstances and
// DescribeInstances for those not seen on the last good poll. The caches
// then hold exactly the ARNs and instances asked for.
func (p *Provider) hostAddrs(ctx context.Context, ciARNs []string) (map[string]instanceAddrs, error) {
	instanceOf := make(map[string]string, len(ciARNs))
	var unknown []string
	for _, a := range ciARNs {
		if id, ok := p.instanceOf[a]; ok {
			instanceOf[a] = id
		} else {
			unknown = append(unknown, a)
		}
	}
	for start := 0; start < len(unknown); start += batchSize {
		batch := unknown[start:min(start+batchSize, len(unknown))]
		out, err := p.ecs.DescribeContainerInstances(ctx, &ecs.DescribeContainerInstancesInput{
			Cluster: aws.String(p.opts.Cluster), ContainerInstances: batch,
		})
		if err != nil {
			return nil, fmt.Errorf("describing container instances: %w", awsapi.Classify(err, awsapi.ECSCodes))
		}
		if err := failures("describing container instances", out.Failures); err != nil {
			return nil, err
		}
		for _, ci := range out.ContainerInstances {
			a, id := aws.ToString(ci.ContainerInstanceArn), aws.ToString(ci.Ec2InstanceId)
			if slices.Contains(batch, a) && id != "" {
				instanceOf[a] = id
			}
		}
	}
	var ids, missing []string
	for _, a := range ciARNs {
		id, ok := instanceOf[a]
		if !ok {
			// ECS named no instance for it (an external instance): its
			// tasks are skipped, and it is asked again next poll.
			continue
		}
		if !slices.Contains(ids, id) {
			ids = append(ids, id)
			if _, ok := p.addrOf[id]; !ok {
				missing = append(missing, id)
			}
		}
	}
	addrOf := make(map[string]instanceAddrs, len(ids))
	for _, id := range ids {
		if a, ok := p.addrOf[id]; ok {
			addrOf[id] = a
		}
	}
	for start := 0; start < len(missing); start += batchSize {
		batch := missing[start:min(start+batchSize, len(missing))]
		pager := ec2.NewDescribeInstancesPaginator(p.ec2, &ec2.DescribeInstancesInput{InstanceIds: batch})
		for page := 1; pager.HasMorePages(); page++ {
			if page > maxPages {
				return nil, fmt.Errorf("describing instances: more than %d pages", maxPages)
			}
			out, err := pager.NextPage(ctx)
			if err != nil {
				return nil, fmt.Errorf("describing the container instances' EC2 instances: %w", awsapi.Classify(err, awsapi.EC2Codes))
			}
			for _, r := range out.Reservations {
				for _, in := range r.Instances {
					if id := aws.ToString(in.InstanceId); slices.Contains(batch, id) {
						addrOf[id] = addrsOf(in)
					}
				}
			}
		}
	}
	// The poll is good so far: the caches become what it used.
	p.instanceOf = instanceOf
	p.addrOf = addrOf
	hosts := make(map[string]instanceAddrs, len(ciARNs))
	for a, id := range instanceOf {
		if addrs, ok := addrOf[id]; ok {
			hosts[a] = addrs
		}
	}
	return hosts, nil
}

// addrsOf reads an instance's private IPv4 address and the first IPv6
// address of its primary network interface (device index 0).
func addrsOf(in ec2types.Instance) instanceAddrs {
	var out instanceAddrs
	if a, err := netip.ParseAddr(aws.ToString(in.PrivateIpAddress)); err == nil && a.Unmap().Is4() {
		out.private = a.Unmap()
	}
	if a, err := netip.ParseAddr(aws.ToString(in.Ipv6Address)); err == nil && a.Is6() && !a.Is4In6() {
		out.ipv6 = a
		return out
	}
	for _, n := range in.NetworkInterfaces {
		if n.Attachment == nil || aws.ToInt32(n.Attachment.DeviceIndex) != 0 || aws.ToInt32(n.Attachment.NetworkCardIndex) != 0 {
			continue
		}
		for _, v6 := range n.Ipv6Addresses {
			if a, err := netip.ParseAddr(aws.ToString(v6.Ipv6Address)); err == nil && a.Is6() && !a.Is4In6() {
				out.ipv6 = a
				return out
			}
		}
	}
	return out
}

// eni is the task's ENI attachment (awsvpc tasks), nil for bridge and
// host tasks.
func eni(t types.Task) *types.Attachment {
	for i, a := range t.Attachments {
		if aws.ToString(a.Type) == eniAttachment {
			return &t.Attachments[i]
		}
	}
	return nil
}

func detail(a *types.Attachment, name string) string {
	for _, kv := range a.Details {
		if aws.ToString(kv.Name) == name {
			return aws.ToString(kv.Value)
		}
	}
	return ""
}

// candidate makes a task a peer but for a bridge or host task's address:
// its address by network mode, its own port, its name and attributes.
func (p *Provider) candidate(t types.Task) candidate {
	id := taskID(aws.ToString(t.TaskArn))
	c := candidate{peer: bridge.Peer{Name: id, ID: id, Port: p.opts.ContainerPort, Attrs: attrs(t)}}
	att := eni(t)
	if att == nil {
		c.ci = aws.ToString(t.ContainerInstanceArn)
		if p.opts.ContainerPort != 0 {
			port, ok := hostPort(t, p.opts.ContainerPort)
			c.peer.Port, c.unmapped = port, !ok
		}
		return c
	}
	// awsvpc: the task has an address of its own, and its ports are the
	// containers' (no mapping).
	raw := detail(att, detailPrivate4)
	if p.opts.Address == IPv6 {
		raw = detail(att, detailIPv6)
	}
	if a, err := netip.ParseAddr(raw); err == nil && a.Unmap().Is4() == (p.opts.Address != IPv6) {
		c.peer.Addrs = []netip.Addr{a.Unmap()}
	}
	return c
}

// peer makes a candidate a peer, a bridge or host task with its host's
// address. A task without an address of the configured kind, or a bridge
// task without a host port for the container port, is skipped (logged
// once, counted on every poll).
func (p *Provider) peer(c candidate, hosts map[string]instanceAddrs) (bridge.Peer, bool) {
	pe := c.peer
	if c.unmapped {
		p.skips.Skip(pe.ID, "task skipped: no host port mapped to the container port",
			"task", pe.ID, "container_port", p.opts.ContainerPort)
		return bridge.Peer{}, false
	}
	if c.ci != "" {
		host := hosts[c.ci]
		addr := host.private
		if p.opts.Address == IPv6 {
			addr = host.ipv6
		}
		if addr.IsValid() {
			pe.Addrs = []netip.Addr{addr} // a copy: the page keeps none
		}
	}
	if len(pe.Addrs) == 0 {
		p.skips.Skip(pe.ID, "task skipped: no address of the configured kind", "task", pe.ID, "address", p.opts.Address)
		return bridge.Peer{}, false
	}
	return pe, true
}

// hostPort is the host port of the task's TCP mapping of containerPort.
// A host-mode task reports its ports as mappings onto themselves; a task
// with no mapping at all (host mode on an agent that reports none) is on
// the port itself. A bridge task whose mappings leave the port out is
// not reachable on it.
func hostPort(t types.Task, containerPort uint16) (uint16, bool) {
	mapped := false
	for _, c := range t.Containers {
		for _, b := range c.NetworkBindings {
			mapped = true
			if aws.ToInt32(b.ContainerPort) == int32(containerPort) && (b.Protocol == "" || b.Protocol == types.TransportProtocolTcp) {
				if hp := aws.ToInt32(b.HostPort); hp > 0 && hp <= 65535 {
					return uint16(hp), true
				}
			}
		}
	}
	return containerPort, !mapped
}

// taskID is the last part of a task's ARN
// (arn:aws:ecs:region:account:task/cluster/id).
func taskID(arn string) string { return arn[strings.LastIndexByte(arn, '/')+1:] }

// attrs are the task's attributes; empty ones are left out.
func attrs(t types.Task) map[string]string {
	out := map[string]string{"task_arn": aws.ToString(t.TaskArn)}
	set := func(k, v string) {
		if v != "" {
			out[k] = v
		}
	}
	set("group", aws.ToString(t.Group))
	set("availability_zone", aws.ToString(t.AvailabilityZone))
	set("launch_type", string(t.LaunchType))
	// arn:aws:ecs:region:account:task-definition/family:revision
	td := aws.ToString(t.TaskDefinitionArn)
	if _, fr, ok := strings.Cut(td, ":task-definition/"); ok {
		family, rev, _ := strings.Cut(fr, ":")
		set("family", family)
		if _, err := strconv.Atoi(rev); err == nil {
			set("revision", rev)
		}
	}
	if ci := aws.ToString(t.ContainerInstanceArn); ci != "" {
		set("container_instance", taskID(ci))
	}
	return out
}
