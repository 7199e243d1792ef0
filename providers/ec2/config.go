package ec2

import (
	"context"
	"errors"
	"fmt"

	"github.com/peerbridge/peerbridge/bridge"
)

// Info describes the provider for the command's registry.
var Info = bridge.ProviderInfo{
	Name:    "ec2",
	Summary: "AWS EC2 instances, through DescribeInstances",
	VendorVars: []string{
		"AWS_REGION", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_PROFILE",
		"AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_ENDPOINT_URL_EC2", "AWS_ENDPOINT_URL",
	},
	Attrs: []string{"instance_id", "instance_type", "availability_zone", "vpc_id", "tags"},
}

// Env is the provider's environment spec (see the command's registry).
// Region, credentials and endpoint are the AWS SDK's own variables.
type Env struct {
	Ec2Filters  string `split_words:"true" desc:"DescribeInstances filters as the AWS CLI names them: name=v1,v2;name=v, e.g. tag:app=myapp; instance-state-name=running is always added"`
	Ec2Address  string `split_words:"true" default:"private" desc:"private, public or ipv6 (from the network interfaces)"`
	Ec2LabelTag string `split_words:"true" default:"Name" desc:"the tag whose value names a peer; the instance id when absent"`
}

// Configure turns the variables into validated options and reads the
// SDK's default chain (AWS_REGION, AWS_PROFILE, ...) from local files;
// only a missing region is found here, as it needs no network.
// Credentials are fetched by New.
func Configure(env Env) (Options, error) {
	opts := Options{LabelTag: env.Ec2LabelTag}
	var errs []error
	var err error
	if opts.Filters, err = ParseFilters(env.Ec2Filters); err != nil {
		errs = append(errs, err)
	}
	if opts.Address, err = ParseAddress(env.Ec2Address); err != nil {
		errs = append(errs, err)
	}
	cfg, err := LoadConfig(context.Background())
	switch {
	case errors.Is(err, ErrNoRegion):
		errs = append(errs, &bridge.VariableError{Variable: "AWS_REGION", Err: fmt.Errorf("%w (the ec2 provider needs it)", err)})
	case err != nil:
		errs = append(errs, &bridge.VariableError{Variable: "AWS_CONFIG_FILE, AWS_PROFILE", Err: err})
	default:
		opts.AWS = &cfg
	}
	return opts, errors.Join(errs...)
}

// Validate checks the options, naming each setting that is wrong
// (bridge.SettingError). An empty Address means Private.
func (o Options) Validate() error {
	if o.Address != "" {
		if _, err := ParseAddress(string(o.Address)); err != nil {
			return err
		}
	}
	return nil
}

// LogAttrs are the settings for the start-up log line. Credentials are
// fetched, and their source logged, by New.
func (o Options) LogAttrs() []any {
	region := ""
	if o.AWS != nil {
		region = o.AWS.Region
	}
	return []any{
		"ec2_filters", FormatFilters(o.Filters), "ec2_address", o.Address, "ec2_label_tag", o.LabelTag,
		"aws_region", region,
	}
}
