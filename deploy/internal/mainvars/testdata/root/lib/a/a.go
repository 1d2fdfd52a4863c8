// Package a is imported by the fixture main package.
package a

import "github.com/hubbub-chat/hubbub/lib/b"

// Name is read from the environment.
var Name = env("HUBBUB_A_NAME") + b.Value

func env(k string) string { return k }
