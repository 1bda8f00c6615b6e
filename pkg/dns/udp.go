package dns

import (
	"encoding/binary"
	"net"

	"github.com/miekg/dns"
)

// servePacket answers one UDP query that the fast path passed on, as
// miekg's server would have: responses are ignored, a message that is
// not a query or does not parse gets FORMERR or NOTIMP, the rest ServeDNS.
func (s *Server) servePacket(pc net.PacketConn, pkt []byte, from *net.UDPAddr) {
	if len(pkt) < 12 {
		return // no header: any reply could be used to amplify
	}
	header := dns.Header{
		Id:      binary.BigEndian.Uint16(pkt),
		Bits:    binary.BigEndian.Uint16(pkt[2:]),
		Qdcount: binary.BigEndian.Uint16(pkt[4:]),
		Ancount: binary.BigEndian.Uint16(pkt[6:]),
		Nscount: binary.BigEndian.Uint16(pkt[8:]),
		Arcount: binary.BigEndian.Uint16(pkt[10:]),
	}
	w := &udpWriter{pc: pc, to: from}
	req := new(dns.Msg)
	action := dns.DefaultMsgAcceptFunc(header)
	if action == dns.MsgAccept {
		if err := req.Unpack(pkt); err == nil {
			s.ServeDNS(w, req)
			return
		}
		action = dns.MsgReject
	}
	if action == dns.MsgIgnore {
		return
	}
	rcode := dns.RcodeFormatError
	if action == dns.MsgRejectNotImplemented {
		rcode = dns.RcodeNotImplemented
	}
	reply := &dns.Msg{MsgHdr: dns.MsgHdr{
		Id:       header.Id,
		Response: true,
		Opcode:   int(header.Bits>>11) & 0xF,
		Rcode:    rcode,
	}}
	if rcode == dns.RcodeFormatError {
		reply.Opcode = dns.OpcodeQuery
	}
	_ = w.WriteMsg(reply)
}

// udpWriter is the dns.ResponseWriter of a query that the fast path
// passed on.
type udpWriter struct {
	pc net.PacketConn
	to *net.UDPAddr
}

func (w *udpWriter) LocalAddr() net.Addr  { return w.pc.LocalAddr() }
func (w *udpWriter) RemoteAddr() net.Addr { return w.to }
func (w *udpWriter) Write(b []byte) (int, error) {
	return w.pc.WriteTo(b, w.to)
}
func (w *udpWriter) WriteMsg(m *dns.Msg) error {
	b, err := m.Pack()
	if err != nil {
		return err
	}
	_, err = w.Write(b)
	return err
}
func (w *udpWriter) Close() error        { return nil }
func (w *udpWriter) TsigStatus() error   { return nil }
func (w *udpWriter) TsigTimersOnly(bool) {}
func (w *udpWriter) Hijack()             {}
