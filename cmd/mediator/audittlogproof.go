package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/mediatorhq/mediator/audit"
	"github.com/mediatorhq/mediator/tlogpolicy"
)

// auditProofCmd writes the C2SP tlog-proof of one entry: mediator audit
// proof --seq N --out F [--policy P]. With a policy it checks the proof
// as audit verify --tlog-proof would and writes nothing that fails.
func auditProofCmd(ctx context.Context, c *call, args []string) error {
	var cl clientOptions
	fs := c.newFlags(clientSettings(&cl)...)
	seq := fs.Int64("seq", -1, "the entry's seq")
	out := fs.String("out", "", "the file to write (the specification's extension is .tlog-proof)")
	policyFile := fs.String("policy", "", "optional: a C2SP tlog-policy file to check the proof against before writing it")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *seq < 0 || *out == "" {
		return errors.New("audit proof: --seq N (≥ 0) and --out FILE are required")
	}
	var policy *tlogpolicy.Policy
	if *policyFile != "" {
		p, err := readTlogPolicy(*policyFile)
		if err != nil {
			return fmt.Errorf("audit proof: %w", err)
		}
		policy = p
	}
	cli, err := cl.connect()
	if err != nil {
		return err
	}
	b, err := cli.TlogProof(ctx, *seq)
	if err != nil {
		return fmt.Errorf("audit proof: %w", err)
	}
	if policy != nil {
		if _, err := audit.VerifyTlogProof(b, policy); err != nil {
			return fmt.Errorf("audit proof: the mediator's proof of entry %d does not verify against %s; nothing written: %w", *seq, *policyFile, err)
		}
	}
	if err := os.WriteFile(*out, b, 0o644); err != nil {
		return fmt.Errorf("audit proof: %w", err)
	}
	if policy != nil {
		fmt.Fprintf(c.stderr, "wrote %s: entry %d, checked against %s\n", *out, *seq, *policyFile)
	} else {
		fmt.Fprintf(c.stderr, "wrote %s: entry %d, not checked; check it with mediator audit verify --tlog-proof %s --policy POLICY\n", *out, *seq, *out)
	}
	return nil
}

// readTlogPolicy reads a C2SP tlog-policy file that lists the logs it
// accepts (an offline check has no other source of the log's key).
func readTlogPolicy(path string) (*tlogpolicy.Policy, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("--policy: %w", err)
	}
	p, err := tlogpolicy.Parse(b)
	if err != nil {
		return nil, fmt.Errorf("--policy %s: %w", path, err)
	}
	if len(p.Logs) == 0 {
		return nil, fmt.Errorf("--policy %s lists no log: add the log's line, log <vkey> (mediator audit verifier-key prints the key)", path)
	}
	return p, nil
}

// tlogProofResult is audit verify --tlog-proof's --output json.
type tlogProofResult struct {
	OK        bool            `json:"ok"`
	Problem   string          `json:"problem,omitempty"`
	Origin    string          `json:"origin,omitempty"`
	Index     int64           `json:"index"`
	TreeSize  int64           `json:"tree_size,omitempty"`
	Root      string          `json:"root,omitempty"`
	Witnesses []string        `json:"witnesses,omitempty"`
	Quorum    string          `json:"quorum,omitempty"`
	Entry     json.RawMessage `json:"entry,omitempty"`
}

// verifyTlogProofFile is audit verify --tlog-proof F --policy P: exit 0
// when the proof verifies, 1 when it does not, 2 when it cannot be read.
func verifyTlogProofFile(c *call, path, policyFile, output string) error {
	if policyFile == "" {
		fmt.Fprintln(c.stderr, "audit verify: --tlog-proof needs --policy FILE, a C2SP tlog-policy with the log's key and the witnesses' quorum")
		return exitCode(2)
	}
	policy, err := readTlogPolicy(policyFile)
	if err != nil {
		fmt.Fprintf(c.stderr, "audit verify: %v\n", err)
		return exitCode(2)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		fmt.Fprintf(c.stderr, "audit verify: --tlog-proof: %v\n", err)
		return exitCode(2)
	}
	v, err := audit.VerifyTlogProof(b, policy)
	res := tlogProofResult{OK: err == nil, Origin: v.Origin, Index: v.Index, TreeSize: v.Size, Witnesses: v.Witnesses, Quorum: policy.Describe()}
	if v.Size > 0 {
		res.Root = base64.StdEncoding.EncodeToString(v.Root[:])
	}
	if err != nil {
		res.Problem = err.Error()
	} else {
		res.Entry = json.RawMessage(v.Leaf) // a leaf is canonical JSON (audit.ParseLeaf read it)
	}
	if output == "json" {
		if err := printJSON(c.stdout, res); err != nil {
			return err
		}
	} else if err != nil {
		fmt.Fprintf(c.stdout, "tlog-proof %s: FAILED\n%s\n", path, res.Problem)
	} else {
		fmt.Fprintf(c.stdout, "tlog-proof %s: OK\nlog: %s, checkpoint of %d entries, root %s\ncosigned by: %s (quorum %s)\nentry %d: %s\n",
			path, v.Origin, v.Size, res.Root, strings.Join(v.Witnesses, ", "), res.Quorum, v.Index, v.Leaf)
	}
	if err != nil {
		return exitCode(1)
	}
	return nil
}
