package main

import (
	"fmt"
	"io"
)

// cmdView runs the central view. This placeholder keeps the dispatcher compiling until
// the view's own file replaces it.
func cmdView(args []string, stdout, stderr io.Writer) int {
	fmt.Fprintln(stderr, "view: not built yet")
	return 1
}
