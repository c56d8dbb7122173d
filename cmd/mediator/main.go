// Command mediator is the mediator service and its operator tools, in one
// binary. Every command and verb takes --help (or -h), which prints its
// own usage; commands() holds them all:
//
//	mediator serve [flags]            run the service
//	mediator migrate [flags]          apply the embedded SQL migrations
//	mediator dev [flags]              run PostgreSQL, Vault, custodians and the service locally
//	mediator dev token --sub NAME --roles r1,r2 [--ttl 1h]
//	                                  print a bearer token the running dev instance accepts
//	mediator dev env [--state-dir DIR]
//	                                  print export lines for the running dev instance
//	mediator audit verify [flags]     recompute and check the whole log in the database
//	mediator audit verify --bundle FILE --key VKEY
//	                                  check an evidence bundle offline
//	mediator audit verify --tlog-proof FILE --policy POLICY
//	                                  check a C2SP tlog-proof offline against a C2SP tlog-policy
//	mediator audit proof --seq N --out FILE [--policy POLICY]
//	                                  write the C2SP tlog-proof of entry N (checked against POLICY first, if given)
//	mediator audit export --conversation C --out FILE [--from T] [--to T]
//	                                  write a conversation's evidence bundle, named by its real id (sent as its pseudonym)
//	mediator audit verifier-key [--checkpoint-key-file F] [--log-origin O] [--entry]
//	                                  print the checkpoints' verifier key from the key file or Vault, as serve finds it; no mediator needed
//	mediator escrow deposit --conversation C --key-id K --key-file F
//	                                  split and seal a key here and escrow it (depositor)
//	mediator escrow custodians        print the custodian set and the digest depositors pin
//	mediator escrow destroy --before DATE [--dry-run] [--yes]
//	                                  show the escrowed keys past retention, ask, destroy them (legal holds respected)
//	mediator escrow hold --conversation ID --reason TEXT
//	                                  put a conversation under a legal hold (operator)
//	mediator escrow release-hold --id HOLD [--dry-run] [--yes]
//	                                  show a hold, ask, record its release at the mediator only (operator); custodians keep it until a signed lift
//	mediator escrow hold-sign --hold-id ID --conversation C --action place|lift --key FILE --as ID
//	                                  print your signature line over a hold statement (officer, approver)
//	mediator escrow hold-deliver --hold-id ID --conversation C --action place|lift --signatures FILE --genesis G [--dry-run] [--yes]
//	                                  post the signed statement to every custodian of the verified roster (asks before a lift)
//	mediator escrow check --conversation C --key-id K --genesis G
//	                                  ask every custodian directly for its signed status of one key's shares
//	mediator escrow reconcile --genesis G --key LOGKEY [--since 24h]
//	                                  compare each custodian's signed inventory with the log's deposits: orphans, silent aborts
//	mediator custodian init --config FILE [--url URL]
//	                                  create a custodian's keys; print its roster entry
//	mediator custodian serve --config FILE
//	                                  run one custodian service, with its own credentials
//	mediator custodian rotate-hpke --config FILE [--url URL]
//	                                  make a new HPKE key; print its roster entry (in force once a roster version lists it)
//	mediator pseudonym keygen --out FILE [--config FILE]
//	                                  make the pseudonym service's VOPRF key (under its Transit key, if configured); print its public key for the roster
//	mediator pseudonym serve --config FILE
//	                                  run the pseudonym service (an organisation other than the mediator's operator)
//	mediator agent --config FILE      run the gateway agent: raw events and keys in over a local socket, pseudonymised and sealed here
//	mediator mirror init --config FILE --url URL
//	                                  make a mirror's cosigning key; print its line for the log's witness policy
//	mediator mirror serve --config FILE
//	                                  run a C2SP tlog-mirror of the log on its own database (a regulator, or another third party)
//	mediator mirror restore --from URL --log-key VKEY --mirror-key VKEY [--token-file F] [--dry-run] [--yes]
//	                                  rebuild the log's lost entries table from a mirror's cosigned copy (asks first)
//	mediator roster genesis --file DRAFT
//	                                  print the digest a draft has as the first version (what everyone pins); to stderr, a short form to read aloud
//	mediator roster propose --file DRAFT [--dry-run] [--yes]
//	                                  show the draft's digest and changes, ask, propose it as the next version (admin); nothing changes until a quorum signs
//	mediator roster show [DIGEST]     show the roster in force, verified, or what a proposal's signed bytes change
//	mediator roster sign DIGEST --key FILE [--yes]
//	                                  show what a proposal's signed bytes change, ask, sign (approver); push it once adopted
//	mediator roster verify            verify the served chain from the pinned genesis; exit 1 if it fails
//	mediator roster push              push the chain in force, verified, to every custodian it lists; report what each holds
//	mediator roster custodians-file --tokens DIR [--file DRAFT] [--out FILE] [--ca-file F] [--client-cert-file F --client-key-file F]
//	                                  write the mediator's --custodians file from the verified roster (or a genesis draft); tokens DIR/<name>-token
//	mediator roster witnesses-file [--quorum N] [--file DRAFT] [--out FILE] [--format json|tlog-policy [--log-key VKEY]]
//	                                  write the mediator's --witnesses file from the roster: each custodian's witness key from its signing key; quorum: the threshold; tlog-policy: a C2SP tlog-policy with a group custodians
//	mediator roster witness-config [--file DRAFT]
//	                                  print a custodian's witness section from the roster's log entry
//	mediator approver checkin --key FILE
//	                                  sign a liveness check-in (approver)
//	mediator request create --case ID --conversation C --from T --to T --recipient FILE.pub --key FILE [flags]
//	                                  build, sign and file a lawful-access request (officer), and check what was stored
//	mediator request show ID          show a request as verified here: its bytes, its officer's signature, its votes (needs --genesis)
//	mediator request list [--status S]
//	                                  list requests, each verified against the roster (needs --genesis)
//	mediator request approve ID --key FILE [--deny] [--expect-digest D] [--yes]
//	                                  verify the request, show what you sign, ask, then sign and submit your vote (approver)
//	mediator request release ID --key FILE --out FILE
//	                                  release the keys (the requesting officer), verify the custodians' receipts, open them locally
//	mediator request revoke ID [--key FILE] [--dry-run] [--yes]
//	                                  show the request, ask, withdraw it; with your officer key, also deliver it signed to every custodian (needs --genesis)
//	mediator keygen --approver|--officer|--recipient --out FILE
//	                                  make an approver or officer signing key, or a recipient key pair
//	mediator loadgen [--rate N] [--duration 10s] [--copy-baseline]
//	                                  send realistic events to a running mediator and report
//	mediator loadgen --deposits [--workers 32]
//	                                  escrow random keys as fast as a running mediator answers
//	mediator loadgen --maximal [--workers 32] [--requests 2]
//	                                  send maximal ingest requests at once; report answers and peak memory
//	mediator vault bootstrap --secret-id-file FILE [flags]
//	                                  prepare a Vault server (mounts, keys, policy, AppRole)
//	mediator vault build              build or find the pinned Vault server; print its path
//	mediator version                  print the version
//
// Settings come from flags, else from MEDIATOR_* environment variables,
// else from defaults; a malformed value stops the command before it
// starts, naming the flag or variable (README, "Configuration").
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

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "mediator:", err)
	}
	os.Exit(exitStatus(err))
}

// exitCode lets a command choose its exit status.
type exitCode int

func (e exitCode) Error() string { return fmt.Sprintf("exit status %d", int(e)) }

// exitStatus is the process's exit status after run returned err: 0 for
// none, the status an exitCode chose, else 1.
func exitStatus(err error) int {
	var ec exitCode
	switch {
	case err == nil:
		return 0
	case errors.As(err, &ec):
		return int(ec)
	}
	return 1
}

// run runs the command line args (without the program name), reading
// the process's environment. Help that was asked for is not an error.
func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "--version" {
		args = append([]string{"version"}, args[1:]...)
	}
	c := &call{stdout: stdout, stderr: stderr, getenv: os.Getenv, stdin: os.Stdin, terminal: isTerminal(os.Stdin) && isTerminal(os.Stderr)}
	err := c.dispatch(ctx, commands(), args)
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}
