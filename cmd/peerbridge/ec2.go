package main

import (
	"context"
	"errors"
	"log/slog"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/ec2"
)

// ec2StartTimeout bounds fetching the credentials at start (IMDS, STS,
// the ECS endpoint): a chain that cannot answer fails the start instead
// of hanging it.
const ec2StartTimeout = 30 * time.Second

// validateEC2 checks an ec2 topology's settings. Region, credentials and
// endpoint are the AWS SDK's own (AWS_REGION, AWS_PROFILE, ...); only a
// missing region is found here, as it needs no network. Credentials are
// fetched when the provider is built.
func validateEC2(errs *problems, prefix string, env TopologyEnv) (func(*slog.Logger) (bridge.Provider, error), []any) {
	opts := ec2.Options{LabelTag: env.Ec2LabelTag}
	var err error
	if opts.Filters, err = ec2.ParseFilters(env.Ec2Filters); err != nil {
		addSettingErrors(errs, prefix, err)
	}
	if opts.Address, err = ec2.ParseAddress(env.Ec2Address); err != nil {
		addSettingErrors(errs, prefix, err)
	}
	cfg, err := ec2.LoadConfig(context.Background())
	switch {
	case errors.Is(err, ec2.ErrNoRegion):
		errs.add("AWS_REGION", "%v (the ec2 provider needs it)", err)
	case err != nil:
		errs.add("AWS_CONFIG_FILE, AWS_PROFILE", "%v", err)
	default:
		opts.AWS = &cfg
	}
	details := []any{
		"ec2_filters", ec2.FormatFilters(opts.Filters), "ec2_address", opts.Address, "ec2_label_tag", env.Ec2LabelTag,
		"aws_region", cfg.Region,
	}
	return func(log *slog.Logger) (bridge.Provider, error) {
		opts.Logger = log
		ctx, cancel := context.WithTimeout(context.Background(), ec2StartTimeout)
		defer cancel()
		return ec2.New(ctx, opts)
	}, details
}

// addSettingErrors adds every bridge.SettingError in err under the
// variable that was set for it, plain or per topology; anything else
// as it is.
func addSettingErrors(errs *problems, prefix string, err error) {
	ses := bridge.SettingErrors(err)
	if len(ses) == 0 {
		*errs = append(*errs, err.Error())
	}
	for _, se := range ses {
		errs.add(varName(prefix, se.Setting), "%v", se.Err)
	}
}
