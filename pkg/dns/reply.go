package dns

import (
	"net"

	"github.com/miekg/dns"
)

// reply is a response under construction with the scratch space to build
// and pack it. Replies are pooled so that an answer from the index costs no
// allocation beyond what the transport does.
type reply struct {
	msg      dns.Msg
	question [1]dns.Question
	answer   []dns.RR
	extra    []dns.RR
	opt      dns.OPT
	buf      []byte
	// rotations is how many different orders setAnswer can give the
	// answer: one per record for several addresses or SRV targets.
	rotations int
}

// maxPooledBuffer keeps a rare huge TCP answer from pinning its buffer.
const maxPooledBuffer = 16 << 10

func (s *Server) newReply(r *dns.Msg) *reply {
	rep := s.replies.Get().(*reply)
	rep.rotations = 1
	rep.msg = dns.Msg{MsgHdr: dns.MsgHdr{
		Id:                 r.Id,
		Response:           true,
		Opcode:             r.Opcode,
		RecursionDesired:   r.RecursionDesired,
		RecursionAvailable: len(s.upstreams) > 0,
		CheckingDisabled:   r.CheckingDisabled,
	}}
	if len(r.Question) > 0 {
		rep.question[0] = r.Question[0]
		rep.msg.Question = rep.question[:1]
	}
	return rep
}

// setAnswer puts rrs, which belong to the index, in the answer section.
// Several addresses or SRV targets are rotated by one place per query, as
// CoreDNS's loadbalance plugin does, so that clients which take the first
// record spread over the endpoints. If the question was not in lower case
// the records are copied with the question's spelling, which resolvers
// using 0x20 randomisation check.
func (rep *reply) setAnswer(rrs []dns.RR, q *dns.Question, name string, rotation uint32) {
	if len(rrs) == 0 {
		return
	}
	start := 0
	if len(rrs) > 1 && (q.Qtype == dns.TypeA || q.Qtype == dns.TypeAAAA || q.Qtype == dns.TypeSRV) {
		start = int(rotation % uint32(len(rrs)))
		rep.rotations = len(rrs)
	}
	if start == 0 && q.Name == name {
		rep.msg.Answer = rrs
		return
	}
	rep.answer = append(append(rep.answer[:0], rrs[start:]...), rrs[:start]...)
	if q.Name != name {
		for i, rr := range rep.answer {
			if rr.Header().Name == name {
				rr = dns.Copy(rr)
				rr.Header().Name = q.Name
				rep.answer[i] = rr
			}
		}
	}
	rep.msg.Answer = rep.answer
}

// send finishes rep for the transport of r, writes it and recycles rep.
func (s *Server) send(w dns.ResponseWriter, r *dns.Msg, rep *reply) {
	_, udp := w.RemoteAddr().(*net.UDPAddr)
	if out, err := s.pack(r, rep, udp); err == nil {
		_, _ = w.Write(out)
	}
	s.recycle(rep)
}

// pack finishes rep for the transport of r and packs it into rep's buffer,
// which the result shares until rep is recycled.
func (s *Server) pack(r *dns.Msg, rep *reply, udp bool) ([]byte, error) {
	m := &rep.msg
	size := dns.MaxMsgSize
	if udp {
		size = dns.MinMsgSize
	}
	if reqOpt := r.IsEdns0(); reqOpt != nil {
		if udp {
			size = max(size, int(reqOpt.UDPSize()))
		}
		// RFC 6891: answer EDNS with EDNS. The OPT is the reply's own
		// because packing writes the extended rcode into it. Truncate
		// may append to Extra, so Extra must be the reply's own too.
		rep.opt = dns.OPT{Hdr: dns.RR_Header{Name: ".", Rrtype: dns.TypeOPT}}
		rep.opt.SetUDPSize(advertisedUDPSize)
		rep.opt.SetDo(reqOpt.Do()) // RFC 3225 asks for the DO bit back
		rep.extra = append(append(rep.extra[:0], m.Extra...), &rep.opt)
		m.Extra = rep.extra
	}
	// Truncate leaves a message that fits alone, compresses one that does
	// not, and drops records and sets TC if that is still too big.
	m.Truncate(size)

	// PackBuffer uses the buffer only if its length suffices.
	out, err := m.PackBuffer(rep.buf[:cap(rep.buf)])
	if err == nil && cap(out) <= maxPooledBuffer {
		rep.buf = out[:0]
	}
	return out, err
}

func (s *Server) recycle(rep *reply) {
	clear(rep.answer)
	clear(rep.extra)
	rep.answer, rep.extra = rep.answer[:0], rep.extra[:0]
	rep.msg = dns.Msg{}
	s.replies.Put(rep)
}
