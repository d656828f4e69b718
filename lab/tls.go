package lab

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"math/big"
	"net"
	"time"
)

// SelfSigned returns a P-256 certificate for the common name cn, signed by
// itself and valid for an hour either side of now: what a lab's TLS
// backend presents so that a test can tell, from the certificate a client
// got, which backend it reached.
func SelfSigned(cn string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lab: certificate for %s: %w", cn, err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("lab: certificate for %s: %w", cn, err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// ClientHello returns the first TLS record a Go client sends for the
// server name name ("" for none): a ClientHello, for clients that only
// need a balancer to route them by name.
func ClientHello(name string) ([]byte, error) {
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		c := tls.Client(client, &tls.Config{ServerName: name, InsecureSkipVerify: true})
		c.Handshake() // fails once server is closed
		c.Close()
	}()
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 1<<16)
	n, err := server.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("lab: client hello for %q: %w", name, err)
	}
	return buf[:n], nil
}
