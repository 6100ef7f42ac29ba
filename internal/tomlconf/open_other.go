//go:build !unix

package tomlconf

import "os"

func openNonBlocking(name string) (*os.File, error) { return os.Open(name) }
