package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/peerbridge/peerbridge/bridge"
	"github.com/peerbridge/peerbridge/providers/ec2"
)

// ec2StartTimeout bounds fetching the credentials at start (IMDS, STS,
// the ECS endpoint): a chain that cannot answer fails the start instead
// of hanging it.
const ec2StartTimeout = 30 * time.Second

// ec2Source reads an ec2 topology's settings. Region, credentials and
// endpoint are the AWS SDK's own (AWS_REGION, AWS_PROFILE, ...); only a
// missing region is found here, as it needs no network. Credentials are
// fetched when the provider is built.
func ec2Source(env TopologyEnv) source {
	opts := ec2.Options{LabelTag: env.Ec2LabelTag}
	var errs []error
	var err error
	if opts.Filters, err = ec2.ParseFilters(env.Ec2Filters); err != nil {
		errs = append(errs, err)
	}
	if opts.Address, err = ec2.ParseAddress(env.Ec2Address); err != nil {
		errs = append(errs, err)
	}
	cfg, err := ec2.LoadConfig(context.Background())
	switch {
	case errors.Is(err, ec2.ErrNoRegion):
		errs = append(errs, &variableError{"AWS_REGION", fmt.Errorf("%w (the ec2 provider needs it)", err)})
	case err != nil:
		errs = append(errs, &variableError{"AWS_CONFIG_FILE, AWS_PROFILE", err})
	default:
		opts.AWS = &cfg
	}
	return source{
		err: errors.Join(errs...),
		build: func(log *slog.Logger) (bridge.Provider, error) {
			opts.Logger = log
			ctx, cancel := context.WithTimeout(context.Background(), ec2StartTimeout)
			defer cancel()
			return ec2.New(ctx, opts)
		},
		details: []any{
			"ec2_filters", ec2.FormatFilters(opts.Filters), "ec2_address", opts.Address, "ec2_label_tag", env.Ec2LabelTag,
			"aws_region", cfg.Region,
		},
	}
}
