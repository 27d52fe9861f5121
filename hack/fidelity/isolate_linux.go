//go:build linux

package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"unsafe"
)

// isolate prepares the network namespace that run.sh starts this command in (unshare --net
// --mount): it brings up the loopback interface, the only one there, and bind-mounts over
// /etc/hosts a file that maps localhost and hosts to 127.0.0.1. Nothing here can reach another
// host, and the change to /etc/hosts is seen by this namespace only.
func isolate(dir string, hosts []string) error {
	if err := loopbackUp(); err != nil {
		return fmt.Errorf("bring up lo: %w", err)
	}
	content := "127.0.0.1 localhost\n::1 localhost\n"
	for _, h := range hosts {
		content += "127.0.0.1 " + h + "\n"
	}
	f := filepath.Join(dir, "hosts")
	if err := os.WriteFile(f, []byte(content), 0o644); err != nil {
		return err
	}
	if err := syscall.Mount(f, "/etc/hosts", "", syscall.MS_BIND, ""); err != nil {
		return fmt.Errorf("bind-mount /etc/hosts: %w", err)
	}
	return nil
}

// loopbackUp sets IFF_UP on lo, as `ip link set lo up` does.
func loopbackUp() error {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_DGRAM, 0)
	if err != nil {
		return err
	}
	defer syscall.Close(fd)
	var ifr struct {
		name  [syscall.IFNAMSIZ]byte
		flags uint16
		_     [22]byte
	}
	copy(ifr.name[:], "lo")
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCGIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	ifr.flags |= syscall.IFF_UP | syscall.IFF_RUNNING
	if _, _, e := syscall.Syscall(syscall.SYS_IOCTL, uintptr(fd), syscall.SIOCSIFFLAGS, uintptr(unsafe.Pointer(&ifr))); e != 0 {
		return e
	}
	return nil
}
