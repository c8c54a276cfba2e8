// The proxy serves no k8s.io/sample-apiserver v0.36.3. k8s.io/kubernetes lists it
// in its go.mod but none of the binaries built here imports it.
module k8s.io/sample-apiserver

go 1.26.0
