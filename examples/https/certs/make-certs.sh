#!/usr/bin/env bash
# Makes the demo certificates of examples/https (a private CA, server certificates for
# *.example.test, localhost and 127.0.0.1, and a client certificate for mTLS), valid 10 years.
# They are for trying the example only: their keys are public. Run it in this directory.
set -euo pipefail
leaf() { # name subject san eku
  openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "$2" -keyout "$1-key.pem" -out "$1.csr" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=critical,CA:FALSE\nextendedKeyUsage=%s\nkeyUsage=critical,digitalSignature\n' "$3" "$4" > "$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 -extfile "$1.ext" -out "$1.pem" 2>/dev/null
  rm -f "$1.csr" "$1.ext"
}
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
  -subj "/CN=cratopus example CA" -keyout ca-key.pem -out ca.pem 2>/dev/null
leaf default "/CN=localhost" "DNS:localhost,IP:127.0.0.1" serverAuth
leaf shop "/CN=shop.example.test" "DNS:shop.example.test,DNS:www.shop.example.test" serverAuth
# An RSA certificate for the same names: clients that only take RSA get this one.
openssl req -newkey rsa:2048 -nodes -subj "/CN=shop.example.test" -keyout shop-rsa-key.pem -out shop-rsa.csr 2>/dev/null
printf 'subjectAltName=DNS:shop.example.test,DNS:www.shop.example.test\nextendedKeyUsage=serverAuth\n' > shop-rsa.ext
openssl x509 -req -in shop-rsa.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 3650 -extfile shop-rsa.ext -out shop-rsa.pem 2>/dev/null
rm -f shop-rsa.csr shop-rsa.ext
leaf partners "/CN=partners.example.test" "DNS:partners.example.test" serverAuth
leaf client "/CN=alice/O=Example Partner" "DNS:alice.partner.test,URI:spiffe://partner.test/alice" clientAuth
rm -f ca.srl
chmod 600 *-key.pem
