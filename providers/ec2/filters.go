package ec2

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/service/ec2/types"

	"github.com/peerbridge/peerbridge/bridge"
)

// stateFilter is the filter every listing carries: only running instances
// are peers.
const stateFilter = "instance-state-name"

// filterNameRE is a DescribeInstances filter name as the AWS CLI spells
// it (availability-zone, network-interface.vpc-id, ...). Tag filters
// (tag:KEY) are checked apart: a tag key may hold almost anything. A
// misspelt name would fail every poll with InvalidParameterValue; caught
// here it fails at start instead.
var filterNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9.-]*$`)

// ParseFilters reads "name=v1,v2;name=v", the filters of a
// DescribeInstances call as the AWS CLI names them: the values of one
// filter are alternatives (OR), separate filters must all match (AND).
// Space around names and values is trimmed; a value cannot hold a comma
// nor a name an equals sign, and a name may be given once. The result
// always ends with instance-state-name=running: a user filter on
// instance-state-name is accepted only when it asks for running alone,
// as anything else would publish no peer or a peer that is not up.
func ParseFilters(s string) ([]types.Filter, error) {
	const setting = "EC2_FILTERS"
	var out []types.Filter
	seen := map[string]bool{}
	for part := range strings.SplitSeq(s, ";") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		name, rawValues, ok := strings.Cut(part, "=")
		name = strings.TrimSpace(name)
		if !ok {
			return nil, bridge.Invalid(setting, "%q is not name=value[,value...]", part)
		}
		if err := checkFilterName(name); err != nil {
			return nil, bridge.Invalid(setting, "%q: %v", part, err)
		}
		var values []string
		for v := range strings.SplitSeq(rawValues, ",") {
			v = strings.TrimSpace(v)
			if v == "" {
				return nil, bridge.Invalid(setting, "filter %s has an empty value in %q", name, part)
			}
			values = append(values, v)
		}
		if seen[name] {
			return nil, bridge.Invalid(setting, "filter %s is given twice: list its values once, comma separated (they are alternatives)", name)
		}
		seen[name] = true
		if name == stateFilter {
			if slices.ContainsFunc(values, func(v string) bool { return v != "running" }) {
				return nil, bridge.Invalid(setting, "%s is always running, peerbridge publishes running instances only: leave it out", stateFilter)
			}
			continue // added below
		}
		out = append(out, types.Filter{Name: aws.String(name), Values: values})
	}
	return append(out, types.Filter{Name: aws.String(stateFilter), Values: []string{"running"}}), nil
}

func checkFilterName(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("empty filter name")
	case strings.HasPrefix(name, "tag:"):
		if strings.TrimSpace(strings.TrimPrefix(name, "tag:")) == "" {
			return fmt.Errorf("tag filter without a key: use tag:KEY=value")
		}
		return nil
	case !filterNameRE.MatchString(name):
		return fmt.Errorf("%q is not a DescribeInstances filter name (lower case, such as availability-zone or tag:KEY)", name)
	}
	return nil
}

// FormatFilters renders filters in the form ParseFilters reads, for the
// start-up log and check.
func FormatFilters(filters []types.Filter) string {
	parts := make([]string, len(filters))
	for i, f := range filters {
		parts[i] = aws.ToString(f.Name) + "=" + strings.Join(f.Values, ",")
	}
	return strings.Join(parts, ";")
}
