// Package infracheck holds the tests of infra/: a syntax check of every .bicep
// file with tree-sitter-bicep (parse-bicep.cjs, run by Node), the drift test
// between the Bicep and the code (app settings, the custom role, Event Grid
// filters and delivery, function folders, API versions, the siteConfig keys
// Flex accepts, publishing policies, the .bicepparam files), which reads the
// templates through the syntax tree parse-bicep.cjs --json dumps, and a run of
// infra/deploy.sh and the azd hook against a recording fake az (testdata/az).
package infracheck
