// Package unused is not imported: not read.
package unused

// X names a variable nobody reads.
const X = "HUBBUB_UNUSED"
