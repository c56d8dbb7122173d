package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"time"

	"golang.org/x/mod/sumdb/note"

	"github.com/mediatorhq/mediator/dev"
	"github.com/mediatorhq/mediator/mirror"
	"github.com/mediatorhq/mediator/witness"
)

// devMirrorName is the dev mirror's cosigner name.
const devMirrorName = "dev.regulator.example/mirror-1"

// startDevMirror runs a regulator's mirror of the dev log on a database of
// its own (dropped when ctx ends, unless keep), public to read, and
// rewrites the dev witnesses file as a tlog-policy that requires it beside
// the custodians' quorum. It returns the mirror's URL.
func startDevMirror(ctx context.Context, in *dev.Instance, keep bool, log *slog.Logger) (string, error) {
	name := "mediator_dev_mirror_" + strings.ToLower(rand.Text()[:8])
	dsn, err := in.Postgres.CreateDatabase(ctx, name)
	if err != nil {
		return "", fmt.Errorf("dev: mirror database: %w", err)
	}
	if !keep {
		go func() {
			<-ctx.Done()
			dctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			_ = in.Postgres.DropDatabase(dctx, name)
		}()
	}
	seed := make([]byte, 32)
	rand.Read(seed)
	signer, vkey, err := witness.NewSigner(devMirrorName, seed)
	if err != nil {
		return "", err
	}
	logV, err := note.NewVerifier(in.VerifierKey)
	if err != nil {
		return "", err
	}
	ready := make(chan string, 1)
	loaded := mirror.Loaded{DatabaseURL: dsn, VerifierKey: vkey,
		Options: mirror.Options{Origin: dev.LogOrigin, LogVerifiers: []note.Verifier{logV}, Signer: signer, PublicReads: true}}
	errc := make(chan error, 1)
	go func() {
		errc <- serveMirror(ctx, mirror.File{Listen: "127.0.0.1:0", Name: devMirrorName, PublicReads: true}, loaded, log, ready)
	}()
	var url string
	select {
	case err := <-errc:
		return "", fmt.Errorf("dev: mirror: %w", err)
	case addr := <-ready:
		url = "http://" + addr
	}
	b, err := os.ReadFile(in.WitnessesFile)
	if err != nil {
		return "", err
	}
	var custodians struct {
		Quorum    int `json:"quorum"`
		Witnesses []struct {
			Name, URL   string
			VerifierKey string `json:"verifier_key"`
		} `json:"witnesses"`
	}
	if err := json.Unmarshal(b, &custodians); err != nil {
		return "", fmt.Errorf("dev: witnesses file: %w", err)
	}
	var policy strings.Builder
	fmt.Fprintf(&policy, "log %s\n", in.VerifierKey)
	names := make([]string, len(custodians.Witnesses))
	for i, w := range custodians.Witnesses {
		fmt.Fprintf(&policy, "witness %s %s %s\n", w.Name, w.VerifierKey, w.URL)
		names[i] = w.Name
	}
	fmt.Fprintf(&policy, "group custodians %d %s\n", custodians.Quorum, strings.Join(names, " "))
	fmt.Fprintf(&policy, "witness %s %s %s\ngroup regulator all %s\n", devMirrorName, vkey, url, devMirrorName)
	policy.WriteString("group both all custodians regulator\nquorum both\n")
	if err := os.WriteFile(in.WitnessesFile, []byte(policy.String()), 0o600); err != nil {
		return "", err
	}
	log.Info("dev mirror serving; the witness policy requires it", "url", url, "copy", url+"/"+mirror.OriginHash(dev.LogOrigin)+"/")
	return url, nil
}
