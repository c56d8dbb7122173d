package deploy_test

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestHighAvailabilityTopologies: the compose variant and the Kubernetes
// manifest run the topology docs/operations.md describes: a primary and a
// synchronous standby with automatic failover, the mediator writing to
// whichever is primary and reading from the standby.
func TestHighAvailabilityTopologies(t *testing.T) {
	services, _ := dig(documents(t, "compose.ha.yaml")[0], "services").(map[string]any)
	for _, name := range []string{"pg-monitor", "postgres", "pg-node2"} {
		if dig(services[name], "build", "dockerfile") != "deploy/postgres-ha/Dockerfile" {
			t.Errorf("compose.ha.yaml: %s is not built from deploy/postgres-ha/Dockerfile", name)
		}
	}
	if dig(services["pg-monitor"], "command") == nil || fmt.Sprint(dig(services["pg-monitor"], "command")) != "[monitor]" {
		t.Error("compose.ha.yaml: pg-monitor does not run the monitor")
	}
	url := func(svc, key string) string { return fmt.Sprint(dig(services[svc], "environment", key)) }
	for _, svc := range []string{"mediator", "migrate"} {
		u := url(svc, "MEDIATOR_DATABASE_URL")
		if !strings.Contains(u, "@postgres:5432,pg-node2:5432/") || !strings.Contains(u, "target_session_attrs=read-write") {
			t.Errorf("compose.ha.yaml: %s does not write to whichever node is primary: %s", svc, u)
		}
	}
	if u := url("mediator", "MEDIATOR_DATABASE_READ_URL"); !strings.Contains(u, "target_session_attrs=prefer-standby") {
		t.Errorf("compose.ha.yaml: the mediator does not read from the standby: %s", u)
	}
	b, err := os.ReadFile("postgres-ha/Dockerfile")
	if err != nil || !strings.Contains(string(b), "postgresql-15-auto-failover") {
		t.Errorf("postgres-ha/Dockerfile does not install pg_auto_failover from Debian: %v", err)
	}
	script, err := os.ReadFile("compose/pg-node.sh")
	if err != nil || !strings.Contains(string(script), "pg_autoctl create postgres") || !strings.Contains(string(script), "scram-sha-256") {
		t.Errorf("compose/pg-node.sh does not create a node with password logins: %v", err)
	}

	var cluster map[string]any
	for _, d := range documents(t, "kubernetes/postgres-ha.yaml") {
		if d["kind"] == "Cluster" {
			cluster = d
		}
	}
	if cluster == nil {
		t.Fatal("kubernetes/postgres-ha.yaml has no CloudNativePG Cluster")
	}
	if n, _ := dig(cluster, "spec", "instances").(float64); n < 2 {
		t.Errorf("the Cluster has %v instances, want a primary and a standby", dig(cluster, "spec", "instances"))
	}
	if n, _ := dig(cluster, "spec", "postgresql", "synchronous", "number").(float64); n < 1 ||
		dig(cluster, "spec", "postgresql", "synchronous", "dataDurability") != "required" {
		t.Error("the Cluster's standby is not synchronous with required durability")
	}
	if dig(cluster, "spec", "affinity", "podAntiAffinityType") != "required" {
		t.Error("the Cluster's instances may share a machine")
	}
	var config map[string]any
	for _, d := range documents(t, "kubernetes/mediator.yaml") {
		if d["kind"] == "ConfigMap" && dig(d, "metadata", "name") == "mediator" {
			config = d
		}
	}
	if dig(config, "data", "MEDIATOR_DATABASE_READ_URL_FILE") == nil {
		t.Error("kubernetes/mediator.yaml does not read from the standby")
	}
}
