package a

// Test files are not read.
var testOnly = "HUBBUB_TEST_ONLY"
