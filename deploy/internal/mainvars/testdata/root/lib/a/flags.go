package a

// Flags lists the variables of a second file of the package.
var Flags = []string{"HUBBUB_A_FLAG", "HUBBUB_A_FLAG", "HUBBUB_9_DIGITS"}
