// Package approval holds what approvers of lawful access sign, so that the
// mediator, the custodians and an approver's own client read it alike: the
// canonical request (RFC 8785 JSON of every field an approver must see),
// its digest, and the approval message an approver signs with Ed25519.
//
// Everything here is pure: bytes in, bytes or values out.
package approval

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/go-json-experiment/json/jsontext"

	"github.com/mediatorhq/mediator/seal"
)

// Version names the canonical request format inside it, so that a
// signature over one format can never be read as over another.
const Version = "mediator-access-request-v1"

// Request is a lawful-access request as approvers sign it. Times are kept
// to the second, in UTC.
type Request struct {
	ID            string
	Requester     string // the filing officer's roster id (their token subject)
	CaseID        string
	LegalBasis    string
	WarrantRef    string
	Jurisdiction  string
	Justification string
	Scope         Scope
	Recipient     seal.PublicKey
	CreatedAt     time.Time
	ExpiresAt     time.Time
}

// Scope is what a request covers: the escrowed keys of these conversations
// deposited within [From, To].
type Scope struct {
	ConversationIDs []string
	From, To        time.Time
}

// canonicalRequest is the JSON the digest covers. Times are RFC 3339 in UTC
// to the second.
type canonicalRequest struct {
	Version       string         `json:"v"`
	ID            string         `json:"id"`
	Requester     string         `json:"requester"`
	CaseID        string         `json:"case_id"`
	LegalBasis    string         `json:"legal_basis"`
	WarrantRef    string         `json:"warrant_ref"`
	Jurisdiction  string         `json:"jurisdiction"`
	Justification string         `json:"justification"`
	Scope         canonicalScope `json:"scope"`
	Recipient     canonicalKey   `json:"recipient_public_key"`
	CreatedAt     string         `json:"created_at"`
	ExpiresAt     string         `json:"expires_at"`
}

type canonicalScope struct {
	ConversationIDs []string `json:"conversation_ids"`
	From            string   `json:"from"`
	To              string   `json:"to"`
}

type canonicalKey struct {
	KEMID     uint16 `json:"kem_id"`
	PublicKey string `json:"public_key"`
}

// FormatTime is how request times appear in the canonical JSON.
func FormatTime(t time.Time) string { return t.UTC().Truncate(time.Second).Format(time.RFC3339) }

// ErrNotUTF8 is returned for text that is not valid UTF-8: encoding/json
// would replace it with U+FFFD, and the digest would then cover text other
// than the request's.
var ErrNotUTF8 = errors.New("approval: request text must be valid UTF-8")

// Canonical returns the RFC 8785 canonical JSON of r. The digest is SHA-256
// of exactly these bytes.
func (r Request) Canonical() ([]byte, error) {
	for _, s := range append([]string{r.ID, r.Requester, r.CaseID, r.LegalBasis, r.WarrantRef, r.Jurisdiction, r.Justification},
		r.Scope.ConversationIDs...) {
		if !utf8.ValidString(s) {
			return nil, ErrNotUTF8
		}
	}
	raw, err := json.Marshal(canonicalRequest{
		Version: Version, ID: r.ID, Requester: r.Requester, CaseID: r.CaseID, LegalBasis: r.LegalBasis,
		WarrantRef: r.WarrantRef, Jurisdiction: r.Jurisdiction, Justification: r.Justification,
		Scope:     canonicalScope{ConversationIDs: r.Scope.ConversationIDs, From: FormatTime(r.Scope.From), To: FormatTime(r.Scope.To)},
		Recipient: canonicalKey{KEMID: r.Recipient.KEMID, PublicKey: base64.StdEncoding.EncodeToString(r.Recipient.PublicKey)},
		CreatedAt: FormatTime(r.CreatedAt), ExpiresAt: FormatTime(r.ExpiresAt),
	})
	if err != nil {
		return nil, fmt.Errorf("approval: canonical request: %w", err)
	}
	v := jsontext.Value(raw)
	if err := v.Canonicalize(); err != nil {
		return nil, fmt.Errorf("approval: canonical request: %w", err)
	}
	return v, nil
}

// Parse reads a canonical request. It accepts only bytes that are exactly
// the canonical form of the request they describe, in this version, so
// that whoever parses a request signs, checks or releases exactly what its
// digest covers, and no two byte strings parse to one request.
func Parse(canonical []byte) (Request, error) {
	var c canonicalRequest
	dec := json.NewDecoder(bytes.NewReader(canonical))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&c); err != nil {
		return Request{}, fmt.Errorf("approval: not a canonical request: %w", err)
	}
	if c.Version != Version {
		return Request{}, fmt.Errorf("approval: canonical request version %q, want %q", c.Version, Version)
	}
	r := Request{ID: c.ID, Requester: c.Requester, CaseID: c.CaseID, LegalBasis: c.LegalBasis, WarrantRef: c.WarrantRef,
		Jurisdiction: c.Jurisdiction, Justification: c.Justification,
		Scope: Scope{ConversationIDs: c.Scope.ConversationIDs}, Recipient: seal.PublicKey{KEMID: c.Recipient.KEMID}}
	var err error
	times := []struct {
		s   string
		dst *time.Time
	}{{c.Scope.From, &r.Scope.From}, {c.Scope.To, &r.Scope.To}, {c.CreatedAt, &r.CreatedAt}, {c.ExpiresAt, &r.ExpiresAt}}
	for _, t := range times {
		if *t.dst, err = time.Parse(time.RFC3339, t.s); err != nil {
			return Request{}, fmt.Errorf("approval: canonical request: bad time %q", t.s)
		}
	}
	if r.Recipient.PublicKey, err = base64.StdEncoding.DecodeString(c.Recipient.PublicKey); err != nil {
		return Request{}, errors.New("approval: canonical request: recipient public key is not base64")
	}
	again, err := r.Canonical()
	if err != nil {
		return Request{}, err
	}
	if !bytes.Equal(again, canonical) {
		return Request{}, errors.New("approval: the request is not in canonical form")
	}
	return r, nil
}

// Digest returns "sha256:" + hex SHA-256 of canonical: what approvers sign.
func Digest(canonical []byte) string {
	sum := sha256.Sum256(canonical)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// The two decisions.
const (
	Approve = "approve"
	Deny    = "deny"
)

// MessageFormat describes Message for people: clients are told exactly what
// a valid signature covers.
const MessageFormat = `"mediator-approval-v1\n" + request id + "\n" + digest + "\n" + decision + "\n" + approver id + "\n"`

// Message is exactly what an approver signs with Ed25519 (MessageFormat).
// Binding all four means a signature counts for one decision by one person
// on one request as filed, and nothing else.
func Message(requestID, digest, decision, approverID string) []byte {
	return []byte("mediator-approval-v1\n" + requestID + "\n" + digest + "\n" + decision + "\n" + approverID + "\n")
}

// Verify reports whether sig is pub's Ed25519 signature over
// Message(requestID, digest, decision, approverID). Malformed keys and
// signatures are simply not valid.
func Verify(pub ed25519.PublicKey, requestID, digest, decision, approverID string, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, Message(requestID, digest, decision, approverID), sig)
}

// RequestMessageFormat describes RequestMessage for people.
const RequestMessageFormat = `"mediator-request-signature-v1\n" + digest + "\n"`

// RequestMessage is exactly what the filing officer signs with Ed25519
// (RequestMessageFormat). The digest covers the whole canonical request:
// its id, its requester (the officer's roster id), its scope and its
// recipient key, so that no one but the officer can choose whom the keys
// are sealed to.
func RequestMessage(digest string) []byte {
	return []byte("mediator-request-signature-v1\n" + digest + "\n")
}

// SignRequest is the officer's signature over RequestMessage(digest).
func SignRequest(priv ed25519.PrivateKey, digest string) []byte {
	return ed25519.Sign(priv, RequestMessage(digest))
}

// VerifyRequest reports whether sig is pub's signature over
// RequestMessage(digest). Malformed keys and signatures are simply not
// valid.
func VerifyRequest(pub ed25519.PublicKey, digest string, sig []byte) bool {
	if len(pub) != ed25519.PublicKeySize || len(sig) != ed25519.SignatureSize {
		return false
	}
	return ed25519.Verify(pub, RequestMessage(digest), sig)
}

// KeyID names an Ed25519 public key: "ed25519:" and the first 16 bytes of
// its SHA-256, in hex.
func KeyID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "ed25519:" + hex.EncodeToString(sum[:16])
}

// signingKeyType names the approver key file format.
const signingKeyType = "mediator-approver-key-v1"

type signingKeyFile struct {
	Type       string `json:"type"`
	PrivateKey []byte `json:"private_key"` // the 32-byte Ed25519 seed
}

// NewSigningKey returns a fresh signing key, an approver's or an
// officer's: its key file and its
// public key.
func NewSigningKey() (file []byte, pub ed25519.PublicKey, err error) {
	pub, priv, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, nil, fmt.Errorf("approval: signing key: %w", err)
	}
	file, err = json.Marshal(signingKeyFile{Type: signingKeyType, PrivateKey: priv.Seed()})
	clear(priv)
	return file, pub, err
}

// ParseSigningKey reads an approver key file.
func ParseSigningKey(file []byte) (ed25519.PrivateKey, error) {
	var f signingKeyFile
	if err := json.Unmarshal(file, &f); err != nil || f.Type != signingKeyType || len(f.PrivateKey) != ed25519.SeedSize {
		return nil, errors.New("approval: not a signing key file (make one with mediator keygen --approver or --officer)")
	}
	priv := ed25519.NewKeyFromSeed(f.PrivateKey)
	clear(f.PrivateKey)
	return priv, nil
}
