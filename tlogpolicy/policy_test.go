package tlogpolicy

import (
	"crypto/rand"
	"errors"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/witness"
)

type testWitness struct {
	signer note.Signer
	vkey   string
}

func newWitness(t testing.TB, name string) testWitness {
	t.Helper()
	seed := make([]byte, 32)
	rand.Read(seed)
	s, vkey, err := witness.NewSigner(name, seed)
	if err != nil {
		t.Fatal(err)
	}
	return testWitness{s, vkey}
}

// specPolicy is the specification's example, with real keys: two
// organizations' witnesses, 2 of X and any of Y.
func specPolicy(t testing.TB) (string, note.Signer, map[string]testWitness) {
	t.Helper()
	skey, vkey, _ := note.GenerateKey(rand.Reader, "example.com/log")
	logSigner, _ := note.NewSigner(skey)
	ws := map[string]testWitness{}
	var b strings.Builder
	fmt.Fprintf(&b, "# the example of c2sp.org/tlog-policy\nlog %s https://example.com/log\n\n", vkey)
	for _, org := range []string{"X", "Y"} {
		for i := 1; i <= 3; i++ {
			name := fmt.Sprintf("%s%d", org, i)
			ws[name] = newWitness(t, "witness.example/"+name)
			fmt.Fprintf(&b, "witness %s\t%s\n", name, ws[name].vkey)
		}
	}
	b.WriteString("group X-witnesses 2 X1 X2 X3\n  group Y-witnesses any Y1 Y2 Y3  \ngroup X-and-Y all X-witnesses Y-witnesses\nquorum X-and-Y\n")
	return b.String(), logSigner, ws
}

func TestMetNestedGroups(t *testing.T) {
	text, _, _ := specPolicy(t)
	p, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Logs) != 1 || p.Logs[0].URL != "https://example.com/log" || len(p.Witnesses) != 6 || len(p.Groups) != 3 || p.Quorum != "X-and-Y" {
		t.Fatalf("parsed %+v", p)
	}
	for _, c := range []struct {
		cosigned string
		want     bool
	}{
		{"X1 X2 Y3", true},
		{"X1 X3 Y1 Y2", true},
		{"X1 X2 X3", false}, // no Y
		{"X1 Y1 Y2 Y3", false},
		{"", false},
	} {
		set := map[string]bool{}
		for _, n := range strings.Fields(c.cosigned) {
			set[n] = true
		}
		if got := p.Met(func(w Witness) bool { return set[w.Name] }); got != c.want {
			t.Errorf("Met(%s) = %v, want %v", c.cosigned, got, c.want)
		}
	}
	if n := p.MinCosigners(); n != 3 {
		t.Errorf("MinCosigners = %d, want 3", n)
	}
	if d := p.Describe(); d != "X-and-Y: 2 of (X-witnesses: 2 of (X1, X2, X3), Y-witnesses: 1 of (Y1, Y2, Y3))" {
		t.Errorf("Describe = %q", d)
	}
	// Marshal writes what Parse reads back the same.
	again, err := Parse(p.Marshal())
	if err != nil || string(again.Marshal()) != string(p.Marshal()) {
		t.Fatalf("round trip: %v\n%s", err, p.Marshal())
	}
	if !strings.Contains(string(p.Marshal()), "group Y-witnesses any Y1 Y2 Y3\n") {
		t.Errorf("Marshal lost the threshold's form:\n%s", p.Marshal())
	}
}

func TestCheckCheckpoint(t *testing.T) {
	text, logSigner, ws := specPolicy(t)
	p, err := Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	signed, err := note.Sign(&note.Note{Text: "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, logSigner)
	if err != nil {
		t.Fatal(err)
	}
	cosign := func(names ...string) []byte {
		out := string(signed)
		for _, n := range names {
			b, err := note.Sign(&note.Note{Text: "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, ws[n].signer)
			if err != nil {
				t.Fatal(err)
			}
			lines := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
			out += lines[len(lines)-1] + "\n"
		}
		return []byte(out)
	}
	if _, names, err := p.Check(cosign("X1", "X3", "Y2")); err != nil || strings.Join(names, " ") != "X1 X3 Y2" {
		t.Fatalf("a quorum: %v %v", names, err)
	}
	if _, _, err := p.Check(cosign("X1", "Y1", "Y2")); !errors.Is(err, ErrQuorum) {
		t.Fatalf("one X: %v, want ErrQuorum", err)
	}
	// A checkpoint another log signed, or the right key over another
	// origin, is not this policy's.
	skey, _, _ := note.GenerateKey(rand.Reader, "example.com/log")
	other, _ := note.NewSigner(skey)
	forged, _ := note.Sign(&note.Note{Text: "example.com/log\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, other)
	if _, _, err := p.Check(forged); !errors.Is(err, ErrNoLog) {
		t.Fatalf("another key: %v, want ErrNoLog", err)
	}
	wrongOrigin, _ := note.Sign(&note.Note{Text: "example.com/other\n5\nAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n"}, logSigner)
	if _, _, err := p.Check(wrongOrigin); !errors.Is(err, ErrNoLog) {
		t.Fatalf("another origin: %v, want ErrNoLog", err)
	}
	none, err := Parse([]byte(strings.Split(text, "\n")[1] + "\nquorum none\n"))
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := none.Check(signed); err != nil || none.MinCosigners() != 0 {
		t.Fatalf("quorum none: %v", err)
	}
}

func TestParseRejects(t *testing.T) {
	a, b := newWitness(t, "w.example/a"), newWitness(t, "w.example/b")
	// A's public key under another name: a duplicate whatever the name.
	renamed := newWitness(t, "w.example/renamed").vkey
	sameKey := strings.Join(strings.SplitN(renamed, "+", 3)[:2], "+") + "+" + strings.SplitN(a.vkey, "+", 3)[2]
	wa, wb := "witness A "+a.vkey+"\n", "witness B "+b.vkey+"\n"
	for _, c := range []struct{ name, text, want string }{
		{"no quorum", wa, "no quorum line"},
		{"two quorums", wa + "quorum A\nquorum A\n", "second quorum"},
		{"undefined quorum", wa + "quorum C\n", "not none or a witness"},
		{"used before defined", "group G any A\n" + wa + "quorum G\n", "not a witness or group defined above"},
		{"none as member", wa + "group G any A none\nquorum G\n", "none cannot be a member"},
		{"member twice", wa + wb + "group G 2 A A B\nquorum G\n", "listed twice"},
		{"k zero", wa + "group G 0 A\nquorum G\n", "must be 1–1"},
		{"k above n", wa + wb + "group G 3 A B\nquorum G\n", "must be 1–2"},
		{"k not decimal", wa + wb + "group G +1 A B\nquorum G\n", "not all, any or a decimal"},
		{"empty group", wa + "group G all\nquorum G\n", "want: group"},
		{"name twice", wa + "group A any A\nquorum A\n", "already defined"},
		{"none defined", "witness none " + a.vkey + "\nquorum none\n", "none is reserved"},
		{"same key, other name", wa + "witness A2 " + sameKey + "\nquorum A\n", "same public key"},
		{"carriage return", wa + "quorum A\r\n", "control character"},
		{"unknown keyword", wa + "quorom A\n", "unknown keyword"},
		{"not a vkey", "witness A notakey\nquorum A\n", "cosignature/v1 verifier key"},
	} {
		_, err := Parse([]byte(c.text))
		if err == nil || !errors.Is(err, ErrSyntax) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error containing %q", c.name, err, c.want)
		}
	}
}

func TestThresholdIsAGroup(t *testing.T) {
	var ws []Witness
	for _, n := range []string{"a", "b", "c"} {
		w := newWitness(t, "custodian."+n)
		v, _ := witness.NewVerifier(w.vkey)
		ws = append(ws, Witness{Name: "custodian." + n, Key: w.vkey, Verifier: v, URL: "https://" + n + ".example/witness"})
	}
	p, err := Threshold("custodians", 2, nil, ws)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(string(p.Marshal()), "group custodians 2 custodian.a custodian.b custodian.c\nquorum custodians\n") || p.MinCosigners() != 2 {
		t.Fatalf("%s", p.Marshal())
	}
	if _, err := Threshold("custodians", 4, nil, ws); err == nil {
		t.Fatal("4 of 3 accepted")
	}
}
