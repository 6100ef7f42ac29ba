//go:build linux

package probes

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The engine's sends and receives are short non-blocking system calls, made with
// unix.RawSyscall6 rather than through net.IPConn. A net.Conn call tells the Go runtime
// that the thread may block in the kernel; if it stays there past the runtime monitor's
// 20 µs tick, which a loopback echo (the kernel answers it inside sendto) easily does,
// the monitor hands the thread's processor to another thread, which costs futex wake-ups
// and keeps the monitor polling every 20 µs. At a thousand probes a second that was
// more CPU than the probes. The socket is non-blocking, so a raw call cannot hang: it
// returns EAGAIN, and the callers then wait on the runtime's poller as net.Conn does.

// icmpSockaddr is a destination in the kernel's own layout, built once per target.
type icmpSockaddr struct {
	v4  unix.RawSockaddrInet4
	v6  unix.RawSockaddrInet6
	is6 bool
}

func newICMPSockaddr(ip netip.Addr) icmpSockaddr {
	var sa icmpSockaddr
	if ip.Is4() {
		sa.v4.Family = unix.AF_INET
		sa.v4.Addr = ip.As4()
		return sa
	}
	sa.is6 = true
	sa.v6.Family = unix.AF_INET6
	sa.v6.Addr = ip.As16()
	return sa
}

// sendto writes one datagram to sa on fd; it returns EAGAIN rather than waiting.
func sendto(fd uintptr, b []byte, sa *icmpSockaddr) unix.Errno {
	ptr, size := unsafe.Pointer(&sa.v4), unsafe.Sizeof(sa.v4)
	if sa.is6 {
		ptr, size = unsafe.Pointer(&sa.v6), unsafe.Sizeof(sa.v6)
	}
	_, _, errno := unix.RawSyscall6(unix.SYS_SENDTO, fd, uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)), 0, uintptr(ptr), size)
	return errno
}

// recvmsg reads one message with its control data and source address from fd;
// flags are MSG_* flags such as MSG_DONTWAIT or MSG_ERRQUEUE.
func recvmsg(fd uintptr, buf, oob []byte, from *unix.RawSockaddrAny, flags int) (n, oobn int, errno unix.Errno) {
	iov := unix.Iovec{Base: &buf[0]}
	iov.SetLen(len(buf))
	msg := unix.Msghdr{Name: (*byte)(unsafe.Pointer(from)), Namelen: uint32(unsafe.Sizeof(*from)), Iov: &iov}
	msg.SetIovlen(1)
	if len(oob) > 0 {
		msg.Control = &oob[0]
		msg.SetControllen(len(oob))
	}
	r, _, errno := unix.RawSyscall(unix.SYS_RECVMSG, fd, uintptr(unsafe.Pointer(&msg)), uintptr(flags))
	if errno != 0 {
		return 0, 0, errno
	}
	return int(r), int(msg.Controllen), 0
}

// sockaddrAddr is the IP address of a received message's source.
func sockaddrAddr(sa *unix.RawSockaddrAny) netip.Addr {
	switch sa.Addr.Family {
	case unix.AF_INET:
		return netip.AddrFrom4((*unix.RawSockaddrInet4)(unsafe.Pointer(sa)).Addr)
	case unix.AF_INET6:
		return netip.AddrFrom16((*unix.RawSockaddrInet6)(unsafe.Pointer(sa)).Addr).Unmap()
	}
	return netip.Addr{}
}
