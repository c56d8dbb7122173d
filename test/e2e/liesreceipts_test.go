package e2e

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/hashicorp/vault/shamir"

	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
	"github.com/mediatorhq/mediator/wire"
)

// The chapters of issue 20 (items 3 to 6): the mediator's host lies to
// the people's tools, and the tools verify the custodians' receipts
// themselves against the roster verified from the genesis they pin.
// TestCompromisedMediator tells them.

// liesConvo is the conversation these chapters escrow and release.
var liesConvo = conv("conv-lies")

// liarClient is a client of the liar. Its answers are lies, which the
// description of the API (checked on http.DefaultClient) rightly does
// not describe: it has a transport of its own.
func liarClient(t *testing.T, l *liar, token string) *client.Client {
	t.Helper()
	c, err := newClient(l.URL, token, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chapterDepositWithoutReceipts: the host answers two deposits, which the
// mediator really made, as "already escrowed" (200) without the
// custodians' receipts. The gateway's client and `mediator escrow
// deposit` both report the deposit not proven stored. Sent again to the
// mediator itself, each is answered 200 with the stored receipts, which
// both verify. It returns the keys deposited, by conversation/key id.
func chapterDepositWithoutReceipts(t *testing.T, in *instance, depositor, pinnedSet, genesis string) map[string][]byte {
	ctx := context.Background()
	l := lyingHost(t, in.base, func(r *http.Request, status int, body []byte) (int, []byte) {
		if r.Method != http.MethodPost || r.URL.Path != "/v1/escrow/keys" || status/100 != 2 {
			return status, body
		}
		var ans map[string]any
		if json.Unmarshal(body, &ans) != nil {
			return status, body
		}
		ans["receipts"] = []any{}
		b, _ := json.Marshal(ans)
		return http.StatusOK, b
	})
	keys := map[string][]byte{}
	for _, id := range []string{"e1", "e2"} {
		keys[liesConvo+"/"+id] = make([]byte, 32)
		rand.Read(keys[liesConvo+"/"+id])
	}

	if _, err := liarClient(t, l, depositor).Deposit(ctx, pinnedSet, liesConvo, "e1", keys[liesConvo+"/e1"]); !errors.Is(err, client.ErrReceipt) ||
		!strings.Contains(err.Error(), "not proven stored") {
		t.Fatalf("the client took a deposit without receipts: %v", err)
	}
	keyFile := filepath.Join(t.TempDir(), "key")
	os.WriteFile(keyFile, keys[liesConvo+"/e2"], 0o600)
	deposit := func(base string) (string, string, error) {
		return runCmd(t, []string{"MEDIATOR_URL=" + base, "MEDIATOR_TOKEN=" + depositor, "MEDIATOR_ROSTER_GENESIS=" + genesis},
			"escrow", "deposit", "--conversation", liesConvo, "--key-id", "e2", "--key-file", keyFile)
	}
	if out, stderr, err := deposit(l.URL); err == nil || strings.Contains(out, "escrowed") || !strings.Contains(stderr, "not proven stored") {
		t.Fatalf("escrow deposit took a deposit without receipts: %v\n%s\n%s", err, out, stderr)
	}

	// The mediator itself answers with the receipts it stored.
	gw, err := newClient(in.base, depositor, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if d, err := gw.Deposit(ctx, pinnedSet, liesConvo, "e1", keys[liesConvo+"/e1"]); err != nil || d.Created || len(d.Receipts) != 5 {
		t.Fatalf("the key again, from the mediator: %+v %v", d, err)
	}
	if out, stderr, err := deposit(in.base); err != nil || !strings.Contains(out, "already escrowed "+liesConvo+"/e2") {
		t.Fatalf("escrow deposit again, from the mediator: %v\n%s\n%s", err, out, stderr)
	}
	return keys
}

// officerCLI runs olga's `mediator request release` of id through base,
// her recipient key in dir, into out.
func officerCLI(t *testing.T, base, olga, genesis, dir, id, out string) (string, string, error) {
	t.Helper()
	return runCmd(t, []string{"MEDIATOR_URL=" + base, "MEDIATOR_TOKEN=" + olga, "MEDIATOR_ROSTER_GENESIS=" + genesis},
		"request", "release", id, "--key", filepath.Join(dir, "olga.key"), "--out", out)
}

// rewriteRelease is a liar's rewrite of the 200 answers about request
// id's release (POST, and GET of the kept shares) by lie.
func rewriteRelease(id string, lie func(rel *wire.Release)) func(r *http.Request, status int, body []byte) (int, []byte) {
	return func(r *http.Request, status int, body []byte) (int, []byte) {
		if r.URL.Path != "/v1/access-requests/"+id+"/release" || status != http.StatusOK {
			return status, body
		}
		var rel wire.Release
		if json.Unmarshal(body, &rel) != nil {
			return status, body
		}
		lie(&rel)
		b, _ := json.Marshal(rel)
		return status, b
	}
}

// refusedBlamingNoOne fails t unless the officer's CLI recovered no key,
// wrote none, said why, and named no custodian.
func refusedBlamingNoOne(t *testing.T, out, why, stdout, stderr string, err error) {
	t.Helper()
	if err == nil || !strings.Contains(stderr, "no key was recovered") || !strings.Contains(stderr, why) {
		t.Fatalf("the officer's CLI did not refuse: %v\n%s\n%s", err, stdout, stderr)
	}
	if strings.Contains(stderr, "custodian-") || strings.Contains(stderr, "bad shares") {
		t.Fatalf("the officer's CLI blamed a custodian for the host's lie:\n%s", stderr)
	}
	if _, err := os.Stat(out); !os.IsNotExist(err) {
		t.Fatalf("the officer's CLI left %s behind: %v", out, err)
	}
}

// chapterForgedRelease: the host hands olga the release of a lawful
// request for liesConvo with every release receipt re-signed by a key
// of its own; then, asked again, the kept release with a key of its own
// (shares it split itself and sealed to her public key, which anyone
// may, under a commitment of its own), first with the custodians'
// genuine receipts, then with receipts and deposit receipts all signed
// by itself. Her CLI opens none of it and blames no custodian. From the
// mediator itself the kept shares open into the deposited keys.
func chapterForgedRelease(t *testing.T, in *instance, admin, olga string, approvers map[string]ed25519.PrivateKey, genesis, dir string, want map[string][]byte) {
	id := approvedRequest(t, in, admin, olga, approvers, liesConvo, filepath.Join(dir, "olga.key.pub"))
	_, forger, _ := ed25519.GenerateKey(rand.Reader)
	resign := func(r shares.SignedReceipt) shares.SignedReceipt {
		s, err := shares.Sign(forger, r.Receipt)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	work := t.TempDir()

	forged := lyingHost(t, in.base, rewriteRelease(id, func(rel *wire.Release) {
		for i := range rel.Keys {
			for j := range rel.Keys[i].Shares {
				rel.Keys[i].Shares[j].Receipt = resign(rel.Keys[i].Shares[j].Receipt)
			}
		}
	}))
	out := filepath.Join(work, "forged.ndjson")
	stdout, stderr, err := officerCLI(t, forged.URL, olga, genesis, dir, id, out)
	refusedBlamingNoOne(t, out, "5 shares came without a valid custodian receipt and were dropped (unverified, from the mediator)", stdout, stderr, err)

	// The host's own key for each key id: shares it split and sealed to
	// olga's public key as a custodian would.
	pubFile, _ := os.ReadFile(filepath.Join(dir, "olga.key.pub"))
	var olgaPub seal.PublicKey
	if err := json.Unmarshal(pubFile, &olgaPub); err != nil {
		t.Fatal(err)
	}
	own := map[string][]byte{}
	ownKey := func(rel *wire.Release, resigned bool) {
		for i := range rel.Keys {
			k := &rel.Keys[i]
			key := make([]byte, 32)
			rand.Read(key)
			own[k.ConversationID+"/"+k.KeyID] = key
			k.KeyCommitment = shares.Commitment(k.ConversationID, k.KeyID, key)
			parts, err := shamir.Split(key, len(k.Shares), 3)
			if err != nil {
				t.Fatal(err)
			}
			for j := range k.Shares {
				sh := &k.Shares[j]
				if sh.Sealed, err = seal.Seal(olgaPub, shares.ReleaseInfo(id, k.ConversationID, k.KeyID, sh.Custodian, sh.Index), parts[j]); err != nil {
					t.Fatal(err)
				}
				if resigned {
					r := sh.Receipt.Receipt
					r.Commitment, r.SealedSHA256 = k.KeyCommitment, shares.SealedHash(sh.Sealed)
					sh.Receipt = resign(shares.SignedReceipt{Receipt: r})
				}
			}
			if resigned {
				for j := range k.DepositReceipts {
					k.DepositReceipts[j].Receipt.Commitment = k.KeyCommitment
					k.DepositReceipts[j] = resign(k.DepositReceipts[j])
				}
			}
		}
	}
	// With the custodians' genuine receipts, the commitment comes from
	// their deposit receipts and no share matches its release receipt;
	// with receipts signed by the host, none verifies.
	for name, resigned := range map[string]bool{"own-genuine-receipts": false, "own-resigned": true} {
		why := map[bool]string{false: "5 shares came without a valid custodian receipt", true: "the key's commitment is unknown"}[resigned]
		l := lyingHost(t, in.base, rewriteRelease(id, func(rel *wire.Release) { ownKey(rel, resigned) }))
		out := filepath.Join(work, name+".ndjson")
		stdout, stderr, err := officerCLI(t, l.URL, olga, genesis, dir, id, out)
		if !strings.Contains(stderr, "fetching the kept release") {
			t.Errorf("%s: the CLI did not say it fetched the kept release:\n%s", name, stderr)
		}
		refusedBlamingNoOne(t, out, why, stdout, stderr, err)
	}

	out = filepath.Join(work, "genuine.ndjson")
	stdout, stderr, err = officerCLI(t, in.base, olga, genesis, dir, id, out)
	if err != nil || !strings.Contains(stdout, "released 2 keys") {
		t.Fatalf("the kept release, from the mediator itself: %v\n%s\n%s", err, stdout, stderr)
	}
	for name, key := range readOpened(t, out) {
		if !bytes.Equal(key, want[name]) || bytes.Equal(key, own[name]) {
			t.Fatalf("%s opened into another key than the one deposited", name)
		}
	}
}

// chapterLostReleaseAnswer: the release of a lawful request goes through
// but the host drops its answer (502). Olga runs the release again: the
// mediator answers that the request is released, and her CLI fetches the
// kept shares, verifies them as any release and recovers the deposited
// keys.
func chapterLostReleaseAnswer(t *testing.T, in *instance, admin, olga string, approvers map[string]ed25519.PrivateKey, genesis, dir string, want map[string][]byte) {
	id := approvedRequest(t, in, admin, olga, approvers, liesConvo, filepath.Join(dir, "olga.key.pub"))
	l := lyingHost(t, in.base, func(r *http.Request, status int, body []byte) (int, []byte) {
		if r.Method == http.MethodPost && r.URL.Path == "/v1/access-requests/"+id+"/release" && status == http.StatusOK {
			return http.StatusBadGateway, []byte("upstream went away\n")
		}
		return status, body
	})
	out := filepath.Join(t.TempDir(), "lost.ndjson")
	if stdout, stderr, err := officerCLI(t, l.URL, olga, genesis, dir, id, out); err == nil || !strings.Contains(stderr, "502") {
		t.Fatalf("the dropped answer: %v\n%s\n%s", err, stdout, stderr)
	}
	stdout, stderr, err := officerCLI(t, l.URL, olga, genesis, dir, id, out)
	if err != nil || !strings.Contains(stderr, "fetching the kept release") || !strings.Contains(stdout, "released 2 keys") {
		t.Fatalf("the release again: %v\n%s\n%s", err, stdout, stderr)
	}
	opened := readOpened(t, out)
	if len(opened) != len(want) {
		t.Fatalf("%d keys opened, want %d", len(opened), len(want))
	}
	for name, key := range want {
		if !bytes.Equal(opened[name], key) {
			t.Fatalf("%s opened into another key than the one deposited", name)
		}
	}
}
