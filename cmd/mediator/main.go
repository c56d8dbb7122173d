// Command mediator is the mediator service and its operator tools, in one
// binary. Each subcommand has --help.
//
//	mediator serve            run the service
//	mediator migrate          apply the embedded SQL migrations
//	mediator dev              run everything locally (PostgreSQL, Vault, the service)
//	mediator dev token        print a bearer token the running dev instance accepts
//	mediator dev env          print export lines for reaching the dev instance
//	mediator audit verify     check the audit log (or an evidence bundle)
//	mediator escrow           deposit a key (split and sealed here), the custodian set, destruction, legal holds
//	mediator custodian serve  run one custodian service
//	mediator request          lawful-access requests: create, show, list, approve, release, revoke
//	mediator keygen           make an approver signing key or a recipient key pair
//	mediator vault bootstrap  prepare a Vault server for the mediator
//	mediator vault build      build (or find in the cache) the pinned Vault server
//	mediator version          print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// version is set at link time (-ldflags "-X main.version=...").
var version = "dev"

const usage = `mediator — compliance service for end-to-end-encrypted messaging

Usage:
  mediator serve [flags]            run the service
  mediator migrate [flags]          apply the embedded SQL migrations
  mediator dev [flags]              run PostgreSQL, Vault and the service locally
  mediator dev token --sub NAME --roles r1,r2 [--ttl 1h]
                                    print a bearer token the running dev instance accepts
  mediator dev env                  print export lines for the running dev instance
  mediator audit verify [flags]     recompute and check the whole log in the database
  mediator audit verify --bundle FILE --key VKEY
                                    check an evidence bundle offline
  mediator escrow deposit --conversation C --key-id K --key-file F
                                    split and seal a key here and escrow it (depositor)
  mediator escrow custodians        print the custodian set and the digest depositors pin
  mediator escrow destroy --before DATE
                                    destroy escrowed keys past retention (legal holds respected)
  mediator escrow hold --conversation ID --reason TEXT
  mediator escrow release-hold --id HOLD
  mediator custodian init --config FILE [--url URL]
                                    create a custodian's keys; print its roster entry
  mediator custodian serve --config FILE
                                    run one custodian service, with its own credentials
  mediator roster genesis|propose|show|sign|verify [flags]
                                    the quorum-signed roster of approvers and custodians
  mediator approver checkin --key FILE
                                    sign a liveness check-in (approver)
  mediator request create|show|list|approve|release|revoke [flags]
                                    lawful-access requests against a running mediator
  mediator keygen --approver|--recipient --out FILE
                                    make an approver signing key or a recipient key pair
  mediator loadgen [flags]          send realistic events to a running mediator and report
  mediator vault bootstrap [flags]  prepare a Vault server (mounts, keys, policy, AppRole)
  mediator vault build              build or find the pinned Vault server; print its path
  mediator version                  print the version

Run "mediator COMMAND --help" for a command's flags.
`

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "mediator:", err)
		}
		var ec exitCode
		if errors.As(err, &ec) {
			os.Exit(int(ec))
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

// exitCode lets a command choose its exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return exitCode(2)
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return serveCmd(ctx, rest, stderr)
	case "migrate":
		return migrateCmd(ctx, rest, stderr)
	case "dev":
		if len(rest) > 0 {
			switch rest[0] {
			case "token":
				return devTokenCmd(rest[1:], stdout, stderr)
			case "env":
				return devEnvCmd(rest[1:], stdout, stderr)
			}
		}
		return devCmd(ctx, rest, stdout, stderr)
	case "vault":
		if len(rest) > 0 {
			switch rest[0] {
			case "bootstrap":
				return vaultBootstrapCmd(ctx, rest[1:], stdout, stderr)
			case "build":
				return vaultBuildCmd(ctx, rest[1:], stdout, stderr)
			}
		}
		fmt.Fprint(stderr, "usage: mediator vault bootstrap|build [--help]\n")
		return exitCode(2)
	case "audit":
		if len(rest) > 0 && rest[0] == "verify" {
			return auditVerifyCmd(ctx, rest[1:], stdout, stderr)
		}
		fmt.Fprint(stderr, "usage: mediator audit verify [--help]\n")
		return exitCode(2)
	case "escrow":
		return escrowCmd(ctx, rest, stdout, stderr)
	case "custodian":
		return custodianCmd(ctx, rest, stdout, stderr)
	case "loadgen":
		return loadgenCmd(ctx, rest, stdout, stderr)
	case "request":
		return requestCmd(ctx, rest, stdout, stderr)
	case "roster":
		return rosterCmd(ctx, rest, stdout, stderr)
	case "approver":
		if len(rest) > 0 && rest[0] == "checkin" {
			return approverCheckinCmd(ctx, rest[1:], stdout, stderr)
		}
		fmt.Fprint(stderr, "usage: mediator approver checkin --key FILE\n")
		return exitCode(2)
	case "keygen":
		return keygenCmd(rest, stdout, stderr)
	case "version", "--version":
		fmt.Fprintln(stdout, "mediator", version)
		return nil
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
	return exitCode(2)
}

// newFlagSet returns a FlagSet whose --help prints the synopsis and flags.
func newFlagSet(name, synopsis string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: %s\n\nFlags:\n", synopsis)
		fs.PrintDefaults()
	}
	return fs
}
