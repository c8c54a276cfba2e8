// The proxy serves no k8s.io/sample-cli-plugin v0.36.3. k8s.io/kubernetes lists it
// in its go.mod but none of the binaries built here imports it.
module k8s.io/sample-cli-plugin

go 1.26.0
