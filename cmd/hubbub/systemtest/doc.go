// Package systemtest holds the black-box tests of a running edge: an
// in-process edge (or the hubbub-edge binary as a child process, for the
// kill tests) on an embedded JetStream server, with the real history
// (SQLite) and presence services where a test needs them. They moved here
// from services/edge so that the edge module depends on no other service
// and no SQL driver; the all-in-one's end-to-end tests are in ../app.
//
// The package has no code of its own: the tests are in package
// systemtest_test, their kit in helpers_test.go (newEnv, newSystem,
// startEdge, startHistory, startPresence, dial and the conn frame helpers)
// over shared/natstest.
package systemtest
