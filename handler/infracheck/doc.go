// Package infracheck holds the tests of infra/: the drift test between the
// Bicep and the code (app settings, the custom role, Event Grid filters and
// delivery, function folders, API versions, the siteConfig keys Flex accepts,
// the .bicepparam files), a syntax check of every .bicep file with
// tree-sitter-bicep (parse-bicep.cjs, run by Node), and a run of
// infra/deploy.sh and the azd hook against a recording fake az
// (testdata/az). There is no Bicep compiler or Azure CLI in the test
// environment: the drift test reads the Bicep as text (bicep_test.go).
package infracheck
