// Command svc is a fixture main package for mainvars' tests.
package main

import (
	"fmt"
	"os"

	"github.com/hubbub-chat/hubbub/lib/a"
	"github.com/other/module/HUBBUB"
)

func main() {
	// HUBBUB_IN_COMMENT is not quoted, so it is not a variable.
	fmt.Println(os.Getenv("HUBBUB_MAIN"), a.Name, HUBBUB.X, os.Getenv("hubbub_lower"), os.Getenv("HUBBUB_"+"JOINED"))
}
