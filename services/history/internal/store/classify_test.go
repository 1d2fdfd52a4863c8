package store

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"
)

// TestClassifyPG pins which SQLSTATEs park a row (the data's fault) and
// which are retried (the database's): parking on a transient error would
// lose an acknowledged message.
func TestClassifyPG(t *testing.T) {
	for code, rejected := range map[string]bool{
		"22021": true,  // character_not_in_repertoire: U+0000 in text
		"22P05": true,  // untranslatable_character
		"22001": true,  // string_data_right_truncation
		"22003": true,  // numeric_value_out_of_range
		"23514": true,  // check_violation
		"23502": true,  // not_null_violation
		"23503": true,  // foreign_key_violation
		"54000": true,  // program_limit_exceeded
		"23505": false, // unique_violation: a race with another writer
		"08006": false, // connection_failure
		"40001": false, // serialization_failure
		"40P01": false, // deadlock_detected
		"53100": false, // disk_full
		"57P01": false, // admin_shutdown
		"57014": false, // query_canceled
		"42P01": false, // undefined_table: a schema problem, not a row's
		"XX000": false, // internal_error
		"":      false,
	} {
		err := fmt.Errorf("wrapped: %w", &pgconn.PgError{Code: code, Message: "m"})
		if got := errors.Is(classifyPG(err), ErrRejected); got != rejected {
			t.Errorf("SQLSTATE %q: rejected %v, want %v", code, got, rejected)
		}
	}
	for _, err := range []error{context.DeadlineExceeded, context.Canceled, errors.New("dial tcp: connection refused")} {
		if errors.Is(classifyPG(err), ErrRejected) {
			t.Errorf("%v: rejected", err)
		}
	}
}
