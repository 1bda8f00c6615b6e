package dns

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"unsafe"

	"github.com/miekg/dns"
	"golang.org/x/sys/unix"
)

// udpBatch is how many datagrams one recvmmsg or sendmmsg call moves.
const udpBatch = 32

// mmsghdr is struct mmsghdr of sendmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// udpLoop serves one UDP socket: it reads queries in batches with
// recvmmsg, answers those the fast path knows from its cache, sends the
// replies in one sendmmsg, and passes the rest to servePacket. It owns its
// buffers and cache, so a query costs no allocation and no lock.
type udpLoop struct {
	s     *Server
	pc    *net.UDPConn
	raw   syscall.RawConn
	cache *answerCache
	query fastQuery

	in, out   [udpBatch]mmsghdr
	inIov     [udpBatch]unix.Iovec
	outIov    [udpBatch]unix.Iovec
	addrs     [udpBatch]unix.RawSockaddrAny
	queries   [udpBatch][]byte
	replies   [udpBatch][]byte
	received  int
	toSend    int
	sent      int
	err       error
	readFunc  func(fd uintptr) bool
	writeFunc func(fd uintptr) bool
}

// batchServer returns a function that serves pc with a udpLoop until pc is
// closed, or nil for a socket that cannot be served that way: one bound to
// an unspecified address, whose replies must leave from the address each
// query came to (miekg's server does that with per-packet control
// messages).
func (s *Server) batchServer(pc net.PacketConn) func() error {
	conn, ok := pc.(*net.UDPConn)
	if !ok {
		return nil
	}
	local, ok := conn.LocalAddr().(*net.UDPAddr)
	if !ok || local.IP.IsUnspecified() {
		return nil
	}
	raw, err := conn.SyscallConn()
	if err != nil {
		return nil
	}
	l := &udpLoop{s: s, pc: conn, raw: raw, cache: newAnswerCache()}
	l.query.name = make([]byte, 0, 256)
	for i := range l.in {
		l.queries[i] = make([]byte, dns.DefaultMsgSize)
		l.replies[i] = make([]byte, 0, dns.MinMsgSize)
		l.inIov[i].Base = &l.queries[i][0]
		l.inIov[i].SetLen(len(l.queries[i]))
		l.in[i].hdr.Iov = &l.inIov[i]
		l.in[i].hdr.SetIovlen(1)
		l.in[i].hdr.Name = (*byte)(unsafe.Pointer(&l.addrs[i]))
		l.out[i].hdr.SetIovlen(1)
	}
	l.readFunc = l.recv
	l.writeFunc = l.send
	return l.run
}

func (l *udpLoop) run() error {
	for {
		if err := l.raw.Read(l.readFunc); err != nil {
			return err
		}
		if l.err != nil {
			return l.err
		}
		l.toSend, l.sent = 0, 0
		for i := range l.received {
			msg := &l.in[i]
			if msg.hdr.Flags&unix.MSG_TRUNC != 0 {
				continue // longer than any query this server takes
			}
			pkt := l.queries[i][:msg.len]
			reply, ok := l.cache.answer(l.s, pkt, &l.query, l.replies[l.toSend][:0])
			if !ok {
				l.passOn(pkt, &l.addrs[i])
				continue
			}
			l.replies[l.toSend] = reply
			out := &l.out[l.toSend]
			out.hdr.Name, out.hdr.Namelen = msg.hdr.Name, msg.hdr.Namelen
			l.outIov[l.toSend].Base = &reply[0]
			l.outIov[l.toSend].SetLen(len(reply))
			out.hdr.Iov = &l.outIov[l.toSend]
			l.toSend++
		}
		if l.toSend > 0 {
			if err := l.raw.Write(l.writeFunc); err != nil {
				return err
			}
		}
	}
}

// recv is the RawConn read callback: false asks the runtime to wait until
// the socket is readable again.
func (l *udpLoop) recv(fd uintptr) bool {
	for i := range l.in {
		l.in[i].hdr.Namelen = unix.SizeofSockaddrAny
		l.in[i].hdr.Flags = 0
	}
	for {
		n, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&l.in[0])), udpBatch, unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			l.received, l.err = int(n), nil
			return true
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		default:
			l.received, l.err = 0, fmt.Errorf("dns: recvmmsg: %w", errno)
			return true
		}
	}
}

// send is the RawConn write callback. A datagram the kernel refuses (a
// firewall's EPERM, say) costs only its own reply.
func (l *udpLoop) send(fd uintptr) bool {
	for l.sent < l.toSend {
		n, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, fd, uintptr(unsafe.Pointer(&l.out[l.sent])), uintptr(l.toSend-l.sent), unix.MSG_DONTWAIT, 0, 0)
		switch errno {
		case 0:
			l.sent += int(n)
		case unix.EINTR:
		case unix.EAGAIN:
			return false
		default:
			l.sent++
		}
	}
	return true
}

// passOn hands a query the fast path does not answer to servePacket, on a
// goroutine of its own since forwarding waits for an upstream.
func (l *udpLoop) passOn(pkt []byte, from *unix.RawSockaddrAny) {
	addr, err := udpAddr(from)
	if err != nil {
		return
	}
	query := append([]byte(nil), pkt...)
	go l.s.servePacket(l.pc, query, addr)
}

func udpAddr(sa *unix.RawSockaddrAny) (*net.UDPAddr, error) {
	switch sa.Addr.Family {
	case unix.AF_INET:
		in := (*unix.RawSockaddrInet4)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
		return &net.UDPAddr{IP: net.IP(append([]byte(nil), in.Addr[:]...)), Port: int(port)}, nil
	case unix.AF_INET6:
		in := (*unix.RawSockaddrInet6)(unsafe.Pointer(sa))
		port := binary.BigEndian.Uint16((*[2]byte)(unsafe.Pointer(&in.Port))[:])
		addr := &net.UDPAddr{IP: net.IP(append([]byte(nil), in.Addr[:]...)), Port: int(port)}
		if in.Scope_id != 0 {
			if ifi, err := net.InterfaceByIndex(int(in.Scope_id)); err == nil {
				addr.Zone = ifi.Name
			}
		}
		return addr, nil
	}
	return nil, errors.New("dns: query from an address that is neither IPv4 nor IPv6")
}
