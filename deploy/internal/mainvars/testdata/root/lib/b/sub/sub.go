// Package sub is below b but not imported: not read.
package sub

// X names a variable nobody reads.
const X = "HUBBUB_SUB"
