//go:build !linux

package main

import "errors"

func isolate(string, []string) error {
	return errors.New("needs Linux network and mount namespaces")
}
