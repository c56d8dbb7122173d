package main

import (
	"context"
	"fmt"
)

// commands is the tree of every command and verb: what dispatches them,
// and what their usage texts and the package documentation list.
func commands() *command {
	return &command{name: "mediator", verbs: []*command{
		{name: "serve", forms: []form{{"[flags]", "run the service"}}, run: serveCmd},
		{name: "migrate", forms: []form{{"[flags]", "apply the embedded SQL migrations"}}, run: migrateCmd},
		{name: "dev", forms: []form{{"[flags]", "run PostgreSQL, Vault, custodians and the service locally"}}, run: devCmd, verbs: []*command{
			{name: "token", forms: []form{{"--sub NAME --roles r1,r2 [--ttl 1h]", "print a bearer token the running dev instance accepts"}}, run: devTokenCmd},
			{name: "env", forms: []form{{"[--state-dir DIR]", "print export lines for the running dev instance"}}, run: devEnvCmd},
		}},
		{name: "audit", verbs: []*command{
			{name: "verify", run: auditVerifyCmd, about: auditVerifyAbout, forms: []form{
				{"[flags]", "recompute and check the whole log in the database"},
				{"--bundle FILE --key VKEY", "check an evidence bundle offline"},
				{"--tlog-proof FILE --policy POLICY", "check a C2SP tlog-proof offline against a C2SP tlog-policy"}}},
			{name: "proof", run: auditProofCmd, forms: []form{
				{"--seq N --out FILE [--policy POLICY]", "write the C2SP tlog-proof of entry N (checked against POLICY first, if given)"}}},
			{name: "export", run: auditExportCmd, forms: []form{
				{"--conversation C --out FILE [--from T] [--to T]", "write a conversation's evidence bundle, named by its real id (sent as its pseudonym)"}}},
			{name: "verifier-key", run: auditVerifierKeyCmd, forms: []form{
				{"[--checkpoint-key-file F] [--log-origin O] [--entry]", "print the checkpoints' verifier key from the key file or Vault, as serve finds it; no mediator needed"}}},
		}},
		escrowCommands(),
		{name: "custodian", verbs: []*command{
			{name: "init", forms: []form{{"--config FILE [--url URL]", "create a custodian's keys; print its roster entry"}}, run: custodianInitCmd},
			{name: "serve", forms: []form{{"--config FILE", "run one custodian service, with its own credentials"}}, run: custodianServeCmd},
			{name: "rotate-hpke", forms: []form{{"--config FILE [--url URL]", "make a new HPKE key; print its roster entry (in force once a roster version lists it)"}}, run: custodianRotateHPKECmd},
		}},
		{name: "pseudonym", verbs: []*command{
			{name: "keygen", forms: []form{{"--out FILE [--config FILE]", "make the pseudonym service's VOPRF key (under its Transit key, if configured); print its public key for the roster"}}, run: pseudonymKeygenCmd},
			{name: "serve", forms: []form{{"--config FILE", "run the pseudonym service (an organisation other than the mediator's operator)"}}, run: pseudonymServeCmd},
		}},
		{name: "agent", forms: []form{{"--config FILE", "run the gateway agent: raw events and keys in over a local socket, pseudonymised and sealed here"}}, run: agentCmd},
		{name: "mirror", verbs: []*command{
			{name: "init", forms: []form{{"--config FILE --url URL", "make a mirror's cosigning key; print its line for the log's witness policy"}}, run: mirrorInitCmd},
			{name: "serve", forms: []form{{"--config FILE", "run a C2SP tlog-mirror of the log on its own database (a regulator, or another third party)"}}, run: mirrorServeCmd},
			{name: "restore", forms: []form{{"--from URL --log-key VKEY --mirror-key VKEY [--token-file F] [--dry-run] [--yes]", "rebuild the log's lost entries table from a mirror's cosigned copy (asks first)"}}, run: mirrorRestoreCmd},
		}},
		rosterCommands(),
		{name: "approver", verbs: []*command{
			{name: "checkin", forms: []form{{"--key FILE", "sign a liveness check-in (approver)"}}, run: approverCheckinCmd},
		}},
		requestCommands(),
		{name: "keygen", run: keygenCmd, forms: []form{
			{"--approver|--officer|--recipient --out FILE", "make an approver or officer signing key, or a recipient key pair"}}},
		{name: "loadgen", run: loadgenCmd, forms: []form{
			{"[--rate N] [--duration 10s] [--copy-baseline]", "send realistic events to a running mediator and report"},
			{"--deposits [--workers 32]", "escrow random keys as fast as a running mediator answers"},
			{"--maximal [--workers 32] [--requests 2]", "send maximal ingest requests at once; report answers and peak memory"}}},
		{name: "vault", verbs: []*command{
			{name: "bootstrap", forms: []form{{"--secret-id-file FILE [flags]", "prepare a Vault server (mounts, keys, policy, AppRole)"}}, run: vaultBootstrapCmd},
			{name: "build", forms: []form{{"", "build or find the pinned Vault server; print its path"}}, run: vaultBuildCmd},
		}},
		{name: "version", forms: []form{{"", "print the version"}}, run: versionCmd},
	}}
}

// escrowCommands are the escrow verbs: deposit and custodians are API
// clients; destroy and the legal holds work on the database and the
// custodians.
func escrowCommands() *command {
	return &command{name: "escrow", verbs: []*command{
		{name: "deposit", forms: []form{{"--conversation C --key-id K --key-file F", "split and seal a key here and escrow it (depositor)"}}, run: escrowDeposit},
		{name: "custodians", forms: []form{{"", "print the custodian set and the digest depositors pin"}}, run: escrowCustodians},
		{name: "destroy", forms: []form{{"--before DATE [--dry-run] [--yes]", "show the escrowed keys past retention, ask, destroy them (legal holds respected)"}}, run: escrowDestroy},
		{name: "hold", forms: []form{{"--conversation ID --reason TEXT", "put a conversation under a legal hold (operator)"}}, run: escrowHold},
		{name: "release-hold", forms: []form{{"--id HOLD [--dry-run] [--yes]", "show a hold, ask, record its release at the mediator only (operator); custodians keep it until a signed lift"}}, run: escrowReleaseHold},
		{name: "hold-sign", forms: []form{{"--hold-id ID --conversation C --action place|lift --key FILE --as ID", "print your signature line over a hold statement (officer, approver)"}}, run: escrowHoldSign},
		{name: "hold-deliver", forms: []form{{"--hold-id ID --conversation C --action place|lift --signatures FILE --genesis G [--dry-run] [--yes]", "post the signed statement to every custodian of the verified roster (asks before a lift)"}}, run: escrowHoldDeliver},
		{name: "check", forms: []form{{"--conversation C --key-id K --genesis G", "ask every custodian directly for its signed status of one key's shares"}}, run: escrowCheck},
		{name: "reconcile", forms: []form{{"--genesis G --key LOGKEY [--since 24h]", "compare each custodian's signed inventory with the log's deposits: orphans, silent aborts"}}, run: escrowReconcile},
	}}
}

// rosterCommands are the roster verbs, API clients but for genesis.
func rosterCommands() *command {
	return &command{name: "roster", about: rosterAbout, verbs: []*command{
		{name: "genesis", forms: []form{{"--file DRAFT", "print the digest a draft has as the first version (what everyone pins); to stderr, a short form to read aloud"}}, run: rosterGenesis},
		{name: "propose", forms: []form{{"--file DRAFT [--dry-run] [--yes]", "show the draft's digest and changes, ask, propose it as the next version (admin); nothing changes until a quorum signs"}}, run: rosterPropose},
		{name: "show", forms: []form{{"[DIGEST]", "show the roster in force, verified, or what a proposal's signed bytes change"}}, run: rosterShow},
		{name: "sign", forms: []form{{"DIGEST --key FILE [--yes]", "show what a proposal's signed bytes change, ask, sign (approver); push it once adopted"}}, run: rosterSign},
		{name: "verify", forms: []form{{"", "verify the served chain from the pinned genesis; exit 1 if it fails"}}, run: rosterVerify},
		{name: "push", forms: []form{{"", "push the chain in force, verified, to every custodian it lists; report what each holds"}}, run: rosterPush},
		{name: "custodians-file", forms: []form{{"--tokens DIR [--file DRAFT] [--out FILE] [--ca-file F] [--client-cert-file F --client-key-file F]",
			"write the mediator's --custodians file from the verified roster (or a genesis draft); tokens DIR/<name>-token"}}, run: rosterCustodiansFile},
		{name: "witnesses-file", forms: []form{{"[--quorum N] [--file DRAFT] [--out FILE] [--format json|tlog-policy [--log-key VKEY]]",
			"write the mediator's --witnesses file from the roster: each custodian's witness key from its signing key; quorum: the threshold; tlog-policy: a C2SP tlog-policy with a group custodians"}}, run: rosterWitnessesFile},
		{name: "witness-config", forms: []form{{"[--file DRAFT]", "print a custodian's witness section from the roster's log entry"}}, run: rosterWitnessConfig},
	}}
}

// requestCommands are the lawful-access verbs, API clients.
func requestCommands() *command {
	return &command{name: "request", about: clientAbout, verbs: []*command{
		{name: "create", forms: []form{{"--case ID --conversation C --from T --to T --recipient FILE.pub --key FILE [flags]", "build, sign and file a lawful-access request (officer), and check what was stored"}}, run: requestCreate},
		{name: "show", forms: []form{{"ID", "show a request as verified here: its bytes, its officer's signature, its votes (needs --genesis)"}}, run: requestShow},
		{name: "list", forms: []form{{"[--status S]", "list requests, each verified against the roster (needs --genesis)"}}, run: requestList},
		{name: "approve", forms: []form{{"ID --key FILE [--deny] [--expect-digest D] [--yes]", "verify the request, show what you sign, ask, then sign and submit your vote (approver)"}}, run: requestApprove},
		{name: "release", forms: []form{{"ID --key FILE --out FILE", "release the keys (the requesting officer), verify the custodians' receipts, open them locally"}}, run: requestRelease},
		{name: "revoke", forms: []form{{"ID [--key FILE] [--dry-run] [--yes]", "show the request, ask, withdraw it; with your officer key, also deliver it signed to every custodian (needs --genesis)"}}, run: requestRevoke},
	}}
}

// versionCmd prints the version.
func versionCmd(ctx context.Context, c *call, args []string) error {
	if err := c.newFlags().Parse(args); err != nil {
		return err
	}
	fmt.Fprintln(c.stdout, "mediator", version)
	return nil
}
