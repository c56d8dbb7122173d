package e2e

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/client"
	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/roster"
	"github.com/mediatorhq/mediator/seal"
)

// e2eApprovers are lena (legal) and sam (security) with fixed signing
// keys, and the genesis roster's entries: the same approvers and the
// officer olga (e2eOfficerKey).
func e2eApprovers() (map[string]ed25519.PrivateKey, []roster.Approver) {
	keys := map[string]ed25519.PrivateKey{}
	var listed []roster.Approver
	for _, a := range [][2]string{{"lena", "legal"}, {"sam", "security"}} {
		keys[a[0]] = e2eApproverKey(a[0])
		listed = append(listed, roster.Approver{ID: a[0], Roles: []string{a[1]}, PublicKey: keys[a[0]].Public().(ed25519.PublicKey)})
	}
	listed = append(listed, roster.Approver{ID: "olga", Roles: []string{roster.RoleOfficer}, PublicKey: e2eOfficerKey().Public().(ed25519.PublicKey)})
	return keys, listed
}

// e2eApproverKey is approver id's fixed signing key: a chapter that adds
// an approver to the roster and a later one that has them sign derive
// the same key.
func e2eApproverKey(id string) ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("e2e approver " + id))
	return ed25519.NewKeyFromSeed(seed[:])
}

// e2eOfficerKey is the officer olga's fixed signing key.
func e2eOfficerKey() ed25519.PrivateKey {
	seed := sha256.Sum256([]byte("e2e officer olga"))
	return ed25519.NewKeyFromSeed(seed[:])
}

// absentCustodiansGenesis is a genesis of e2eApprovers and three
// custodians that do not run, for instances that escrow nothing.
func absentCustodiansGenesis(t *testing.T) roster.Roster {
	t.Helper()
	_, approvers := e2eApprovers()
	g := roster.Roster{Version: 1, Approvers: approvers, Threshold: 2, Rule: roster.DefaultRule()}
	for _, name := range []string{"absent-1", "absent-2", "absent-3"} {
		_, hpkeKey, err := seal.NewKey(seal.KEMX25519)
		if err != nil {
			t.Fatal(err)
		}
		sign, _, _ := ed25519.GenerateKey(nil)
		g.Custodians = append(g.Custodians, roster.Custodian{Name: name, URL: "http://127.0.0.1:9/", HPKEKey: hpkeKey, SigningKey: sign})
	}
	return g
}

// ensureRoster has the instance adopt its genesis, proposed by an admin
// and signed by each of its approvers with keys (id → key); once adopted
// it does nothing.
func ensureRoster(t *testing.T, in *instance, keys map[string]ed25519.PrivateKey) {
	t.Helper()
	as := func(sub, role string) *client.Client {
		tok, err := in.issuer.Issue(sub, []string{role}, time.Hour)
		if err != nil {
			t.Fatal(err)
		}
		c, err := newClient(in.base, tok, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	var signers []dev.Signer
	ids := make([]string, 0, len(keys))
	for id := range keys {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		if _, listed := in.genesis.Approver(id); listed {
			signers = append(signers, dev.Signer{ID: id, Key: keys[id], Client: as(id, "approver")})
		}
	}
	if o, listed := in.genesis.Officer("olga"); listed && o.PublicKey.Equal(e2eOfficerKey().Public()) {
		signers = append(signers, dev.Signer{ID: "olga", Key: e2eOfficerKey(), Client: as("olga", "officer")})
	}
	if err := dev.AdoptGenesis(context.Background(), as("ada", "admin"), in.genesis, signers); err != nil {
		t.Fatal(err)
	}
}

// approverKeys makes a signing key file per approver (id → role) with
// `mediator keygen --approver`, as each approver would on their own
// machine, and returns the key files, the keys and the approvers as the
// genesis roster lists them.
func approverKeys(t *testing.T, dir string, roles map[string]string) (map[string]string, map[string]ed25519.PrivateKey, []roster.Approver) {
	t.Helper()
	files := map[string]string{}
	keys := map[string]ed25519.PrivateKey{}
	var listed []roster.Approver
	ids := make([]string, 0, len(roles))
	for id := range roles {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	for _, id := range ids {
		path := filepath.Join(dir, id+".key")
		if _, stderr, err := runCmd(t, nil, "keygen", "--approver", "--out", path); err != nil {
			t.Fatalf("keygen %s: %v %s", id, err, stderr)
		}
		b, _ := os.ReadFile(path)
		priv, err := approval.ParseSigningKey(b)
		if err != nil {
			t.Fatal(err)
		}
		files[id], keys[id] = path, priv
		listed = append(listed, roster.Approver{ID: id, Roles: []string{roles[id]}, PublicKey: priv.Public().(ed25519.PublicKey)})
	}
	return files, keys, listed
}
