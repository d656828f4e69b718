package labprogs

import (
	"encoding/binary"
	"testing"

	"github.com/xlbproject/xlb/datapath/packet"
)

// FuzzTemplateSums: templateSums never panics, and whatever it accepts,
// the checksums gen.c would write for the template's own source address
// and port make the IP header and the TCP/UDP segment verify.
func FuzzTemplateSums(f *testing.F) {
	for _, tc := range templates {
		b, err := BuildTemplate(tc.ts)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		ipSum, l4Sum, proto, err := templateSums(b)
		if err != nil {
			return
		}
		b = append([]byte(nil), b...)
		saddr := uint64(binary.LittleEndian.Uint32(b[ipSrcOff:]))
		sport := uint64(binary.LittleEndian.Uint16(b[l4Off:]))
		addrSum := saddr&0xffff + saddr>>16
		binary.LittleEndian.PutUint16(b[ipCheckOff:], foldLE(uint64(ipSum)+addrSum))
		if c := packet.Checksum(b[ethLen:l4Off]); c != 0 {
			t.Fatalf("IP header does not verify (%#04x)", c)
		}
		checkOff := l4Off + 6
		if proto == protoTCP {
			checkOff = l4Off + 16
		}
		c := foldLE(uint64(l4Sum) + addrSum + sport)
		if c == 0 && proto == protoUDP {
			c = 0xffff
		}
		binary.LittleEndian.PutUint16(b[checkOff:], c)
		pseudo := make([]byte, 12, 12+len(b))
		copy(pseudo[0:4], b[ipSrcOff:ipSrcOff+4])
		copy(pseudo[4:8], b[ipDstOff:ipDstOff+4])
		pseudo[9] = proto
		binary.BigEndian.PutUint16(pseudo[10:], uint16(len(b)-l4Off))
		if v := packet.Checksum(append(pseudo, b[l4Off:]...)); v != 0 {
			t.Fatalf("L4 segment does not verify (%#04x)", v)
		}
	})
}
