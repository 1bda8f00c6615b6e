package dns

import (
	"encoding/binary"

	"github.com/miekg/dns"
)

// The UDP fast path answers the queries that nearly all cluster traffic
// consists of (one question, lower case, answered from the index) with
// replies packed once and kept until the index changes. Everything else
// (forwarded names, TCP, odd flags, upper case) goes through ServeDNS,
// which also packs the replies that the fast path keeps, so both give the
// same bytes.

// fastQuery is a query as the fast path reads it off the wire.
type fastQuery struct {
	id            uint16
	rd, cd        bool
	qtype, qclass uint16
	edns, do      bool
	udpSize       uint16
	name          []byte // presentation form, lower case, fully qualified
}

// Header bits of the second and third byte of a message (RFC 1035 4.1.1).
const (
	bitsQR     = 0x8000
	bitsOpcode = 0x7800
	bitsTC     = 0x0200
	bitsRD     = 0x0100
	bitsCD     = 0x0010
)

// parseFastQuery reads a plain query: a header with one question, no answer
// or authority record, at most an OPT record, and a name of lower-case
// letters, digits, hyphens and underscores. It appends the name to
// q.name's buffer. Anything else is not ok, and goes the general way.
func parseFastQuery(pkt []byte, q *fastQuery) bool {
	if len(pkt) < 12 {
		return false
	}
	bits := binary.BigEndian.Uint16(pkt[2:])
	if bits&(bitsQR|bitsOpcode|bitsTC) != 0 ||
		binary.BigEndian.Uint16(pkt[4:]) != 1 ||
		binary.BigEndian.Uint16(pkt[6:]) != 0 ||
		binary.BigEndian.Uint16(pkt[8:]) != 0 {
		return false
	}
	arcount := binary.BigEndian.Uint16(pkt[10:])
	if arcount > 1 {
		return false
	}
	q.id = binary.BigEndian.Uint16(pkt)
	q.rd, q.cd = bits&bitsRD != 0, bits&bitsCD != 0

	name := q.name[:0]
	off := 12
	for {
		if off >= len(pkt) {
			return false
		}
		length := int(pkt[off])
		off++
		if length == 0 {
			break
		}
		// Compression pointers and the reserved label types have the
		// top bits set; a query has no name to point back to anyway.
		if length > 63 || off+length > len(pkt) || len(name)+length+1 > 254 {
			return false
		}
		for _, c := range pkt[off : off+length] {
			if !('a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
				return false
			}
		}
		name = append(append(name, pkt[off:off+length]...), '.')
		off += length
	}
	if len(name) == 0 {
		name = append(name, '.')
	}
	q.name = name
	if off+4 > len(pkt) {
		return false
	}
	q.qtype = binary.BigEndian.Uint16(pkt[off:])
	q.qclass = binary.BigEndian.Uint16(pkt[off+2:])
	off += 4

	q.edns, q.do, q.udpSize = false, false, 0
	if arcount == 1 {
		// OPT (RFC 6891 6.1.2): root name, type, the UDP size as class,
		// extended rcode, version and flags as TTL, then its options,
		// which this server does not use.
		if off+11 > len(pkt) || pkt[off] != 0 || binary.BigEndian.Uint16(pkt[off+1:]) != dns.TypeOPT {
			return false
		}
		q.edns = true
		q.udpSize = binary.BigEndian.Uint16(pkt[off+3:])
		q.do = pkt[off+7]&0x80 != 0
		off += 11 + int(binary.BigEndian.Uint16(pkt[off+9:]))
	}
	return off == len(pkt)
}

// answerCache keeps packed replies for one UDP socket's loop, which alone
// uses it, so it needs no lock.
type answerCache struct {
	generation uint64
	entries    map[string]*cachedAnswer
	key        []byte
	rotation   uint32
}

// maxCachedAnswers bounds what a flood of made-up names can make the cache
// hold: past it, the cache starts again.
const maxCachedAnswers = 4096

// cachedAnswer is the reply to one question, one packed message per order
// of its records, with ID 0 and RD and CD clear.
type cachedAnswer struct {
	variants [][]byte
}

func newAnswerCache() *answerCache {
	return &answerCache{entries: map[string]*cachedAnswer{}}
}

// answer appends the reply to the query in pkt to out. It returns false if
// the query needs the general path.
func (c *answerCache) answer(s *Server, pkt []byte, q *fastQuery, out []byte) ([]byte, bool) {
	if !parseFastQuery(pkt, q) || !s.indexReady() {
		return out, false
	}
	// Read the generation before the index: an answer built meanwhile
	// from newer records is then only thrown away early, never kept.
	generation := s.idx.generation.Load()
	if generation != c.generation {
		clear(c.entries)
		c.generation = generation
	}

	size := uint16(dns.MinMsgSize)
	flags := byte(0)
	if q.edns {
		size = max(size, q.udpSize)
		flags = 1
		if q.do {
			flags = 2
		}
	}
	c.key = append(c.key[:0], q.name...)
	c.key = binary.BigEndian.AppendUint16(c.key, q.qtype)
	c.key = binary.BigEndian.AppendUint16(c.key, q.qclass)
	c.key = binary.BigEndian.AppendUint16(c.key, size)
	c.key = append(c.key, flags)

	entry := c.entries[string(c.key)]
	if entry == nil {
		packed, rotations, ok := s.packLocal(q, 0)
		if !ok {
			return out, false
		}
		if len(c.entries) >= maxCachedAnswers {
			clear(c.entries)
		}
		entry = &cachedAnswer{variants: make([][]byte, rotations)}
		entry.variants[0] = packed
		c.entries[string(c.key)] = entry
	}
	variant := 0
	if len(entry.variants) > 1 {
		c.rotation++
		variant = int(c.rotation % uint32(len(entry.variants)))
	}
	if entry.variants[variant] == nil {
		packed, _, ok := s.packLocal(q, uint32(variant))
		if !ok {
			return out, false
		}
		entry.variants[variant] = packed
	}

	start := len(out)
	out = append(out, entry.variants[variant]...)
	binary.BigEndian.PutUint16(out[start:], q.id)
	if q.rd {
		out[start+2] |= bitsRD >> 8
	}
	if q.cd {
		out[start+3] |= bitsCD
	}
	return out, true
}

// packLocal packs the reply to q as ServeDNS would send it over UDP, with
// ID 0 and RD and CD clear, if the index alone answers it.
func (s *Server) packLocal(q *fastQuery, rotation uint32) (packed []byte, rotations int, ok bool) {
	m := new(dns.Msg)
	m.Question = []dns.Question{{Name: string(q.name), Qtype: q.qtype, Qclass: q.qclass}}
	if q.edns {
		m.SetEdns0(q.udpSize, q.do)
	}
	rep, chase := s.localReply(m, m.Question[0].Name, rotation)
	if rep == nil {
		return nil, 0, false
	}
	defer s.recycle(rep)
	if chase != nil {
		return nil, 0, false
	}
	out, err := s.pack(m, rep, true)
	if err != nil {
		return nil, 0, false
	}
	return append([]byte(nil), out...), rep.rotations, true
}
