package escrow

// The SQL PGRows runs, for the plan test in package escrow_test.
const (
	SQLKeysInScope = sqlKeysInScope
	SQLInScope     = sqlInScope
	SQLByIDs       = sqlByIDs
)
