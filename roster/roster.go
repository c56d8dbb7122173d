// Package roster holds who may approve lawful access and who holds the
// shares: a chain of versions in which each version after the first takes
// effect only when a quorum of the previous version's approvers signed it,
// and every approver it adds or re-keys signed it with the new key.
//
// Whoever pins the first version's digest (the genesis) — a custodian, a
// depositor, the mediator itself — accepts only a chain that verifies from
// it (VerifyChain), so no one who can write the mediator's tables, and no
// single admin or approver, can add an approver, change a key or swap a
// custodian.
//
// Everything here is pure: bytes in, values out.
package roster

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"

	"github.com/go-json-experiment/json/jsontext"
	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/approval"
	"github.com/mediatorhq/mediator/pseudonym"
	"github.com/mediatorhq/mediator/seal"
	"github.com/mediatorhq/mediator/shares"
)

// Format names the canonical roster format inside it.
const Format = "mediator-roster-v1"

// Limits on a roster's size.
const (
	MaxApprovers  = 1000
	MaxRoles      = 16
	maxURLLen     = 2048
	digestPattern = `^sha256:[0-9a-f]{64}$`
)

var (
	rolePattern   = regexp.MustCompile(`^[a-z][a-z0-9_-]{0,31}$`)
	digestMatcher = regexp.MustCompile(digestPattern)
)

// ValidRole reports whether s may be a role name: a lower-case name such as
// legal or security.
func ValidRole(s string) bool { return rolePattern.MatchString(s) }

// Roster is one version: the approvers whose signatures count, the
// custodians that hold shares and their threshold, and the rule a quorum
// of these approvers must meet to adopt the next version.
type Roster struct {
	// Version is 1 for the genesis and one more for each next version.
	Version uint64 `json:"version"`
	// Previous is the digest of the version before, empty in the genesis.
	Previous   string      `json:"previous"`
	Approvers  []Approver  `json:"approvers"`
	Custodians []Custodian `json:"custodians"`
	// Threshold is how many custodians' shares recover a key.
	Threshold int  `json:"threshold"`
	Rule      Rule `json:"rule"`
	// Pseudonym, if set, is the pseudonym service clients turn
	// identifiers into pseudonyms through. A version without it has the
	// same digest as before the field existed.
	Pseudonym *PseudonymService `json:"pseudonym,omitempty"`
	// Log, if set, is the mediator's audit log the custodians witness:
	// its origin and the note verifier keys of its checkpoints, so that a
	// custodian's witness section and the mediator's witnesses file come
	// from the roster, not from a running mediator. A version without it
	// has the same digest as before the field existed.
	Log *AuditLog `json:"log,omitempty"`
}

// MaxLogKeys is how many verifier keys a roster's audit log may list: the
// key in force and those that signed its earlier checkpoints.
const MaxLogKeys = 16

// AuditLog is the mediator's audit log as the roster names it: its
// origin (the first line of its checkpoints, the mediator's --log-origin)
// and the note verifier keys of its checkpoints (GET
// /v1/audit/verifier-key, `mediator audit verifier-key`), each named by
// the origin. List every key that signed checkpoints still to be
// verified, the one in force first.
type AuditLog struct {
	Origin       string   `json:"origin"`
	VerifierKeys []string `json:"verifier_keys"`
}

// validate lists what is wrong with the log's entry.
func (l AuditLog) validate() []string {
	var probs []string
	if l.Origin == "" || strings.ContainsAny(l.Origin, "\n+ ") || len(l.Origin) > maxURLLen {
		probs = append(probs, "log: origin must be the log's origin line, such as mediator/audit")
	}
	if len(l.VerifierKeys) == 0 || len(l.VerifierKeys) > MaxLogKeys {
		probs = append(probs, fmt.Sprintf("log: verifier_keys must list 1–%d note verifier keys", MaxLogKeys))
	}
	for i, k := range l.VerifierKeys {
		v, err := note.NewVerifier(k)
		switch {
		case err != nil || v.Name() != l.Origin:
			probs = append(probs, fmt.Sprintf("log: verifier key %q is not a note verifier key named by the origin %q", k, l.Origin))
		case slices.Contains(l.VerifierKeys[:i], k):
			probs = append(probs, "log: verifier_keys lists the same key twice")
		}
	}
	return probs
}

// VerifierKeyFingerprint is "ed25519:" and the full hex SHA-256 of the
// Ed25519 public key inside a note verifier key (name+hash+base64), as
// KeyFingerprint; empty if vkey is not an Ed25519 note verifier key.
func VerifierKeyFingerprint(vkey string) string {
	parts := strings.SplitN(vkey, "+", 3)
	if len(parts) != 3 {
		return ""
	}
	key, err := base64.StdEncoding.DecodeString(parts[2])
	if err != nil || len(key) != 1+ed25519.PublicKeySize || key[0] != 1 {
		return ""
	}
	return KeyFingerprint(key[1:])
}

// PseudonymService is the pseudonym service (docs/pseudonyms.md): where
// clients reach it, and the VOPRF public keys whose evaluations they
// accept, in pseudonym.PublicKey's text form. The first key is the one in
// force; a second, when listed, is the one it replaces, accepted while
// the service serves both during a rotation's overlap. Only a quorum
// changes them, as any roster field.
type PseudonymService struct {
	URL        string   `json:"url"`
	PublicKeys []string `json:"public_keys"`
}

// Keys parses the service's public keys, the one in force first.
func (p PseudonymService) Keys() ([]pseudonym.PublicKey, error) {
	out := make([]pseudonym.PublicKey, 0, len(p.PublicKeys))
	for _, s := range p.PublicKeys {
		k, err := pseudonym.ParsePublicKey(s)
		if err != nil {
			return nil, err
		}
		out = append(out, k)
	}
	return out, nil
}

// validate lists what is wrong with the service's entry.
func (p PseudonymService) validate() []string {
	var probs []string
	if err := CheckCustodianURL(p.URL); err != nil {
		probs = append(probs, "pseudonym service: "+err.Error())
	}
	if len(p.PublicKeys) == 0 || len(p.PublicKeys) > 2 {
		probs = append(probs, "pseudonym service: public_keys must list the key in force and at most the one it replaces")
	}
	keys, err := p.Keys()
	switch {
	case err != nil:
		probs = append(probs, "pseudonym service: "+err.Error())
	case len(keys) == 2 && keys[0].ID() == keys[1].ID():
		probs = append(probs, "pseudonym service: public_keys lists the same key twice")
	}
	return probs
}

// RoleOfficer is the role of an officer: a person who files lawful-access
// requests and signs each with their key. An officer holds no other role:
// whoever asks for keys is never among those who approve, here or in a
// quorum that changes the roster.
const RoleOfficer = "officer"

// Approver is one person in the roster: their id (the sub of their bearer
// token), roles and one Ed25519 public key. An entry with the role
// officer (RoleOfficer) is an officer, who files requests; every other
// entry is an approver. Both are added and re-keyed under the same quorum
// and proof of possession. Rotating a key is a new version with another
// key.
type Approver struct {
	ID        string            `json:"id"`
	Roles     []string          `json:"roles"`
	PublicKey ed25519.PublicKey `json:"public_key"`
}

// KeyID names the approver's key (approval.KeyID).
func (a Approver) KeyID() string { return approval.KeyID(a.PublicKey) }

// Fingerprint is the full hex SHA-256 of the entry's public key, for
// people who compare keys out of band.
func (a Approver) Fingerprint() string { return KeyFingerprint(a.PublicKey) }

// KeyFingerprint is "ed25519:" and the full hex SHA-256 of an Ed25519
// public key.
func KeyFingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:])
}

// IsOfficer reports whether the entry is an officer rather than an
// approver.
func (a Approver) IsOfficer() bool { return slices.Contains(a.Roles, RoleOfficer) }

// Custodian is one share holder: its name, where the mediator reaches it,
// the HPKE key shares are sealed to and the Ed25519 key of its receipts.
type Custodian struct {
	Name       string            `json:"name"`
	URL        string            `json:"url"`
	HPKEKey    seal.PublicKey    `json:"hpke_public_key"`
	SigningKey ed25519.PublicKey `json:"signing_key"`
}

// Rule is what adopting the next version takes: signatures of at least
// MinSigners distinct approvers of this version, who between them hold
// every role in RequiredRoles.
type Rule struct {
	MinSigners    int      `json:"min_signers"`
	RequiredRoles []string `json:"required_roles"`
}

// DefaultRule is at least 2 distinct approvers covering legal and security.
func DefaultRule() Rule { return Rule{MinSigners: 2, RequiredRoles: []string{"legal", "security"}} }

// Satisfied reports whether approvers, as listed in the version the rule
// belongs to, meet it. It returns what is missing otherwise, for people.
func (r Rule) Satisfied(approvers []Approver) (ok bool, missing []string) {
	ids := map[string]bool{}
	roles := map[string]bool{}
	for _, a := range approvers {
		if a.IsOfficer() {
			continue // officers never count toward a quorum
		}
		ids[a.ID] = true
		for _, role := range a.Roles {
			roles[role] = true
		}
	}
	if len(ids) < r.MinSigners {
		missing = append(missing, fmt.Sprintf("%d more distinct approvers", r.MinSigners-len(ids)))
	}
	for _, role := range r.RequiredRoles {
		if !roles[role] {
			missing = append(missing, "an approver with the "+role+" role")
		}
	}
	return len(missing) == 0, missing
}

// Set returns the custodians as depositors seal to them.
func (r Roster) Set() shares.Set {
	s := shares.Set{Threshold: r.Threshold, Custodians: make([]shares.Custodian, len(r.Custodians))}
	for i, c := range r.Custodians {
		s.Custodians[i] = shares.Custodian{Name: c.Name, HPKEKey: c.HPKEKey, SigningKey: c.SigningKey}
	}
	return s
}

// Approver returns approver id of this version; an officer is not an
// approver.
func (r Roster) Approver(id string) (Approver, bool) {
	a, ok := r.Member(id)
	if !ok || a.IsOfficer() {
		return Approver{}, false
	}
	return a, true
}

// Officer returns officer id of this version.
func (r Roster) Officer(id string) (Approver, bool) {
	a, ok := r.Member(id)
	if !ok || !a.IsOfficer() {
		return Approver{}, false
	}
	return a, true
}

// Member returns the entry id of this version, approver or officer.
func (r Roster) Member(id string) (Approver, bool) {
	for _, a := range r.Approvers {
		if a.ID == id {
			return a, true
		}
	}
	return Approver{}, false
}

// Custodian returns custodian name of this version.
func (r Roster) Custodian(name string) (Custodian, bool) {
	for _, c := range r.Custodians {
		if c.Name == name {
			return c, true
		}
	}
	return Custodian{}, false
}

// Validate checks a version's own form: version and previous digest
// consistent, approvers with distinct ids and distinct keys (one key is one
// person), valid roles, a valid custodian set with http(s) URLs, and a rule
// of at least 2 signers and one role that its own approvers can meet, so
// that no version can leave the roster impossible to change.
func (r Roster) Validate() error {
	var probs []string
	switch {
	case r.Version == 0:
		probs = append(probs, "version must be at least 1")
	case r.Version == 1 && r.Previous != "":
		probs = append(probs, "the genesis (version 1) has no previous version")
	case r.Version > 1 && !digestMatcher.MatchString(r.Previous):
		probs = append(probs, "previous must be the sha256: digest of the version before")
	}
	if len(r.Approvers) == 0 || len(r.Approvers) > MaxApprovers {
		probs = append(probs, fmt.Sprintf("must list 1–%d approvers", MaxApprovers))
	}
	ids := map[string]bool{}
	keys := map[string]string{}
	for _, a := range r.Approvers {
		if !shares.ValidID(a.ID) {
			probs = append(probs, fmt.Sprintf("approver id %q must be 1–%d printable bytes", a.ID, shares.MaxIDLen))
			continue
		}
		if ids[a.ID] {
			probs = append(probs, fmt.Sprintf("approver %s is listed twice", a.ID))
		}
		ids[a.ID] = true
		if len(a.Roles) == 0 || len(a.Roles) > MaxRoles {
			probs = append(probs, fmt.Sprintf("approver %s must have 1–%d roles", a.ID, MaxRoles))
		}
		for i, role := range a.Roles {
			if !ValidRole(role) || slices.Contains(a.Roles[:i], role) {
				probs = append(probs, fmt.Sprintf("approver %s: roles must be distinct lower-case names such as legal", a.ID))
				break
			}
		}
		if a.IsOfficer() && len(a.Roles) > 1 {
			probs = append(probs, fmt.Sprintf("%s: an officer holds no other role (who asks for keys never approves)", a.ID))
		}
		if len(a.PublicKey) != ed25519.PublicKeySize {
			probs = append(probs, fmt.Sprintf("approver %s: public_key must be a 32-byte Ed25519 public key", a.ID))
			continue
		}
		if other, dup := keys[string(a.PublicKey)]; dup {
			probs = append(probs, fmt.Sprintf("approvers %s and %s share a key", other, a.ID))
		}
		keys[string(a.PublicKey)] = a.ID
	}
	if err := r.Set().Validate(); err != nil {
		probs = append(probs, err.Error())
	}
	for _, c := range r.Custodians {
		if err := CheckCustodianURL(c.URL); err != nil {
			probs = append(probs, fmt.Sprintf("custodian %s: %v", c.Name, err))
		}
	}
	if r.Rule.MinSigners < 2 {
		probs = append(probs, "rule.min_signers must be at least 2")
	}
	if len(r.Rule.RequiredRoles) == 0 {
		probs = append(probs, "rule.required_roles must name at least one role")
	}
	for i, role := range r.Rule.RequiredRoles {
		if role == RoleOfficer {
			probs = append(probs, "rule.required_roles cannot name officer: officers never sign roster versions into force")
			break
		}
		if !ValidRole(role) || slices.Contains(r.Rule.RequiredRoles[:i], role) {
			probs = append(probs, "rule.required_roles must be distinct role names")
			break
		}
	}
	if r.Pseudonym != nil {
		probs = append(probs, r.Pseudonym.validate()...)
	}
	if r.Log != nil {
		probs = append(probs, r.Log.validate()...)
	}
	if len(probs) == 0 {
		if ok, missing := r.Rule.Satisfied(r.Approvers); !ok {
			probs = append(probs, "its own approvers cannot meet its rule: it lacks "+strings.Join(missing, " and "))
		}
	}
	if len(probs) > 0 {
		return &InvalidError{Problems: probs}
	}
	return nil
}

// InvalidError is a roster version that is not well formed; Problems
// lists every fault.
type InvalidError struct{ Problems []string }

func (e *InvalidError) Error() string { return "roster: invalid: " + strings.Join(e.Problems, "; ") }

// canonical is the JSON a version's digest covers.
type canonical struct {
	Format string `json:"v"`
	Roster
}

// Canonical returns the RFC 8785 canonical JSON of r: what its digest
// covers and approvers sign.
func (r Roster) Canonical() ([]byte, error) {
	raw, err := json.Marshal(canonical{Format: Format, Roster: r})
	if err != nil {
		return nil, fmt.Errorf("roster: canonical: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("roster: canonical: %w", err)
	}
	return v, nil
}

// Digest returns "sha256:" and the hex SHA-256 of canonical.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Digest returns the digest of r's canonical form.
func (r Roster) Digest() (string, error) {
	c, err := r.Canonical()
	if err != nil {
		return "", err
	}
	return Digest(c), nil
}

// Parse reads a canonical version. It accepts only bytes that are exactly
// the canonical form of a valid version, so that the digest names one
// roster and what is checked is what was signed.
func Parse(b []byte) (Roster, error) {
	var c canonical
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Roster{}, fmt.Errorf("roster: not a canonical roster: %w", err)
	}
	if c.Format != Format {
		return Roster{}, fmt.Errorf("roster: format %q, want %q", c.Format, Format)
	}
	again, err := c.Roster.Canonical()
	if err != nil {
		return Roster{}, err
	}
	if !bytes.Equal(again, b) {
		return Roster{}, errors.New("roster: the roster is not in canonical form")
	}
	if err := c.Roster.Validate(); err != nil {
		return Roster{}, err
	}
	return c.Roster, nil
}

// ValidDigest reports whether s looks like a roster digest.
func ValidDigest(s string) bool { return digestMatcher.MatchString(s) }

// Errors of a request's signature (VerifyRequest).
var (
	// ErrNotOfficer: the request's requester is not an officer of this
	// version.
	ErrNotOfficer = errors.New("roster: the requester is not an officer of the roster in force")
	// ErrBadRequestSignature: the officer's signature does not verify over
	// the request's digest with their key in this version.
	ErrBadRequestSignature = errors.New("roster: the officer's signature does not verify over the request with their key in the roster in force")
)

// VerifyRequest checks that the request with this digest, filed by
// requester, carries requester's signature (approval.RequestMessage) and
// that requester is an officer of this version. It returns the officer.
// The mediator, each approver's tool and each custodian call it alike, so
// that no request is approved or released that its officer did not sign.
func (r Roster) VerifyRequest(requester, digest string, sig []byte) (Approver, error) {
	o, ok := r.Officer(requester)
	if !ok {
		return Approver{}, ErrNotOfficer
	}
	if !approval.VerifyRequest(o.PublicKey, digest, sig) {
		return Approver{}, ErrBadRequestSignature
	}
	return o, nil
}

// CheckCustodianURL checks where a custodian is reached: an https URL, or
// http only to a loopback address (127.0.0.0/8, ::1, localhost), where
// nothing on the network can read the mediator's custodian token or the
// evidence it carries.
func CheckCustodianURL(s string) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" || len(s) > maxURLLen {
		return errors.New("url must be an https URL")
	}
	switch u.Scheme {
	case "https":
		return nil
	case "http":
		host := u.Hostname()
		if ip := net.ParseIP(host); host == "localhost" || (ip != nil && ip.IsLoopback()) {
			return nil
		}
		return fmt.Errorf("url %s: plain http is allowed only to a loopback address; use https", s)
	}
	return errors.New("url must be an https URL")
}
