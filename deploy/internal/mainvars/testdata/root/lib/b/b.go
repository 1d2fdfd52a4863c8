// Package b imports a back: the cycle must not loop.
package b

import (
	_ "github.com/hubbub-chat/hubbub/lib/a"
	_ "github.com/hubbub-chat/hubbub/lib/missing"
)

// Value names a variable.
const Value = "HUBBUB_B_VALUE"
