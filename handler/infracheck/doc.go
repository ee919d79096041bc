// Package infracheck holds the drift test between the Bicep under infra/ and
// the code: app settings (handler/config), the custom role (handler/vault),
// the Event Grid filters (handler/event), the function folders (functions/)
// and the API versions. It parses the Bicep as text (there is no Bicep
// compiler in the test environment); see infracheck_test.go.
package infracheck
