package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"strings"
	"testing"
)

// checkECSFile holds deploy/ecs to the rules an ECS user meets: the task
// definition (register-task-definition --cli-input-json) runs the pinned
// image as the Dockerfile's numeric user on Fargate with a task role and
// no credentials in its environment; the service (create-service
// --cli-input-json) runs that family; the task role's policy allows what
// the ecs provider calls and nothing more; the trust policy lets ECS
// tasks assume the role.
func checkECSFile(name, text string, uid, gid int) []error {
	var doc map[string]any
	if err := json.Unmarshal([]byte(text), &doc); err != nil {
		return []error{err}
	}
	var errs []error
	walkImages(doc, func(ref string) {
		if err := pinnedImage(ref); err != nil {
			errs = append(errs, err)
		}
	})
	switch path.Base(name) {
	case "task-definition.json":
		if doc["family"] != "peerbridge" || doc["networkMode"] != "awsvpc" || fmt.Sprint(doc["requiresCompatibilities"]) != "[FARGATE]" {
			errs = append(errs, fmt.Errorf("family %v, networkMode %v, requiresCompatibilities %v: want peerbridge, awsvpc, [FARGATE]",
				doc["family"], doc["networkMode"], doc["requiresCompatibilities"]))
		}
		if role, _ := doc["taskRoleArn"].(string); !strings.Contains(role, ":role/") {
			errs = append(errs, errors.New("no taskRoleArn: the provider's credentials come from the task role"))
		}
		defs, _ := doc["containerDefinitions"].([]any)
		if len(defs) != 1 {
			return append(errs, fmt.Errorf("%d container definitions, want 1", len(defs)))
		}
		c, _ := defs[0].(map[string]any)
		if want := fmt.Sprintf("%d:%d", uid, gid); c["user"] != want {
			errs = append(errs, fmt.Errorf("user %v, want the Dockerfile's %s", c["user"], want))
		}
		env, _ := c["environment"].([]any)
		for _, e := range env {
			kv, _ := e.(map[string]any)
			n := fmt.Sprint(kv["name"])
			if strings.HasPrefix(n, "AWS_ACCESS_KEY") || strings.HasPrefix(n, "AWS_SECRET") || strings.HasSuffix(n, "TOKEN") {
				errs = append(errs, fmt.Errorf("environment sets %s: credentials come from the task role, secrets through \"secrets\"", n))
			}
		}
		var ports []string
		pm, _ := c["portMappings"].([]any)
		for _, m := range pm {
			m, _ := m.(map[string]any)
			ports = append(ports, fmt.Sprintf("%v/%v", m["containerPort"], m["protocol"]))
		}
		slices.Sort(ports)
		if !slices.Equal(ports, []string{"8653/tcp", "8653/udp", "8654/tcp"}) {
			errs = append(errs, fmt.Errorf("port mappings %v, want DNS over UDP and TCP and HTTP as the Dockerfile exposes", ports))
		}
	case "service.json":
		if doc["taskDefinition"] != "peerbridge" || doc["launchType"] != "FARGATE" {
			errs = append(errs, fmt.Errorf("taskDefinition %v, launchType %v: want peerbridge, FARGATE", doc["taskDefinition"], doc["launchType"]))
		}
	case "iam-policy.json":
		var actions []string
		stmts, _ := doc["Statement"].([]any)
		for _, st := range stmts {
			st, _ := st.(map[string]any)
			switch a := st["Action"].(type) {
			case string:
				actions = append(actions, a)
			case []any:
				for _, x := range a {
					actions = append(actions, fmt.Sprint(x))
				}
			}
		}
		slices.Sort(actions)
		if want := []string{"ec2:DescribeInstances", "ecs:DescribeContainerInstances", "ecs:DescribeTasks", "ecs:ListTasks"}; !slices.Equal(actions, want) {
			errs = append(errs, fmt.Errorf("actions %v, want exactly %v", actions, want))
		}
	case "trust-policy.json":
		if !strings.Contains(text, `"ecs-tasks.amazonaws.com"`) || !strings.Contains(text, `"sts:AssumeRole"`) {
			errs = append(errs, errors.New("the trust policy does not let ecs-tasks.amazonaws.com assume the role"))
		}
	default:
		errs = append(errs, errors.New("no rules for this file"))
	}
	return errs
}

// TestCheckECSFileCatches: the rules fail a task definition that breaks
// them, so that TestDeployRules can fail.
func TestCheckECSFileCatches(t *testing.T) {
	bad := `{"family": "peerbridge", "networkMode": "bridge", "requiresCompatibilities": ["EC2"],
	  "containerDefinitions": [{"image": "peerbridge:latest", "user": "root",
	    "environment": [{"name": "AWS_SECRET_ACCESS_KEY", "value": "x"}], "portMappings": []}]}`
	// networkMode, taskRoleArn, image, user, environment, ports
	if errs := checkECSFile("deploy/ecs/task-definition.json", bad, 65532, 65532); len(errs) != 6 {
		t.Errorf("%d errors, want 6:\n%v", len(errs), errs)
	}
	policy := `{"Statement": [{"Action": ["ecs:*"], "Resource": "*"}]}`
	if errs := checkECSFile("deploy/ecs/iam-policy.json", policy, 1, 1); len(errs) != 1 {
		t.Errorf("a wildcard policy: %v", errs)
	}
}
