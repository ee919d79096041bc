package reconcile_test

import (
	"encoding/json"

	"github.com/atlas-akv-guard/atlas-akv-guard/handler/sim/atlassim"
)

func jsonUnmarshal(b []byte, v any) error { return json.Unmarshal(b, v) }

func atlassimFault503() atlassim.Fault { return atlassim.Fault{Status: 503} }
