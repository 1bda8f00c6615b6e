//go:build !linux

package dns

import "net"

// batchServer has no recvmmsg to build on here: miekg's server serves
// every socket.
func (s *Server) batchServer(net.PacketConn) func() error { return nil }
