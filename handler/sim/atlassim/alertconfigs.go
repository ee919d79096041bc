package atlassim

import "net/http"

// RouteAlertConfigs is GET …/alertConfigs in Stats.
const RouteAlertConfigs = "alertConfigs"

// Atlas's alert event types for encryption at rest with customer keys.
const (
	EventEARConfigNoLongerValid    = "ENCRYPTION_AT_REST_CONFIG_NO_LONGER_VALID"
	EventEARKMSNetworkAccessDenied = "ENCRYPTION_AT_REST_KMS_NETWORK_ACCESS_DENIED"
)

// AlertConfig is one alert configuration of a project.
type AlertConfig struct {
	ID            string
	EventTypeName string
	Enabled       bool
}

// defaultEvents are the alert configurations, all enabled, of a project
// whose configurations were never set: both EAR alerts on (the guard's quiet
// case) beside two unrelated ones.
var defaultEvents = []string{"NO_PRIMARY", EventEARConfigNoLongerValid, EventEARKMSNetworkAccessDenied, "CREDIT_CARD_ABOUT_TO_EXPIRE"}

// alertConfigsLocked returns p's configurations, making the defaults real
// on first use.
func alertConfigsLocked(p *project) []AlertConfig {
	if p.alertConfigs == nil {
		for _, ev := range defaultEvents {
			p.alertConfigs = append(p.alertConfigs, AlertConfig{ID: newID(), EventTypeName: ev, Enabled: true})
		}
	}
	return p.alertConfigs
}

// SetAlertConfigs replaces the project's alert configurations for eventType
// with one per value of enabled (none removes them) and returns their ids.
// The project is created if needed.
func (s *Sim) SetAlertConfigs(groupID, eventType string, enabled ...bool) (ids []string) {
	s.locked(func() {
		p := s.projectLocked(groupID)
		var kept []AlertConfig
		for _, a := range alertConfigsLocked(p) {
			if a.EventTypeName != eventType {
				kept = append(kept, a)
			}
		}
		for _, on := range enabled {
			kept = append(kept, AlertConfig{ID: newID(), EventTypeName: eventType, Enabled: on})
			ids = append(ids, kept[len(kept)-1].ID)
		}
		p.alertConfigs = append([]AlertConfig{}, kept...)
	})
	return ids
}

// handleAlertConfigs serves the project's alert configurations (each with
// a notification by email to the Project Owners).
func (s *Sim) handleAlertConfigs(w http.ResponseWriter, r *http.Request) {
	if s.lookupProject(w, r) == nil {
		return
	}
	groupID := r.PathValue("groupId")
	var items []any
	s.locked(func() {
		for _, a := range alertConfigsLocked(s.projectLocked(groupID)) {
			items = append(items, map[string]any{
				"created": "2025-01-15T09:00:00Z", "updated": "2025-01-15T09:00:00Z", "enabled": a.Enabled, "eventTypeName": a.EventTypeName,
				"groupId": groupID, "id": a.ID, "matchers": []any{},
				"links": []any{link(baseURL(r)+"/api/atlas/v2/groups/"+groupID+"/alertConfigs/"+a.ID, "self")},
				"notifications": []map[string]any{{"delayMin": 0, "emailEnabled": true, "intervalMin": 60,
					"roles": []string{"GROUP_OWNER"}, "smsEnabled": false, "typeName": "GROUP"}},
			})
		}
	})
	s.writePage(w, r, items)
}
