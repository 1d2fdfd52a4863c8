package store

import "context"

// MigrateTo creates (or upgrades) the database o selects up to schema
// version v only, as a build of that version left it, and closes it.
func MigrateTo(ctx context.Context, o Options, v int) error {
	var (
		s   Store
		err error
	)
	if IsPostgresURL(o.DatabaseURL) {
		s, err = openPostgres(ctx, o.DatabaseURL, o.PostgresOptions, v)
	} else {
		s, err = openSQLite(ctx, SQLitePath(o.DataDir), v)
	}
	if err != nil {
		return err
	}
	return s.Close()
}
