package pseudonym

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
)

// maxEvaluationAnswer bounds the service's answer: MaxBatch elements of
// 32 bytes in base64, a proof and a key id, with room to spare.
const maxEvaluationAnswer = 1 << 20

// HTTPEvaluate is an Evaluate that calls the pseudonym service at baseURL
// (POST /v1/evaluate) with a caller's bearer token, through hc
// (http.DefaultClient when nil). The answer is checked by the Client, not
// here.
func HTTPEvaluate(baseURL, token string, hc *http.Client) Evaluate {
	if hc == nil {
		hc = http.DefaultClient
	}
	url := strings.TrimSuffix(baseURL, "/") + "/v1/evaluate"
	return func(ctx context.Context, req EvaluateRequest) (Evaluation, error) {
		body, err := json.Marshal(req)
		if err != nil {
			return Evaluation{}, err
		}
		hr, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(body))
		if err != nil {
			return Evaluation{}, err
		}
		hr.Header.Set("Content-Type", "application/json")
		hr.Header.Set("Authorization", "Bearer "+token)
		resp, err := hc.Do(hr)
		if err != nil {
			return Evaluation{}, fmt.Errorf("the pseudonym service: %w", err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxEvaluationAnswer))
		if err != nil {
			return Evaluation{}, fmt.Errorf("the pseudonym service's answer: %w", err)
		}
		if resp.StatusCode != http.StatusOK {
			var e struct {
				Error struct {
					Code    string `json:"code"`
					Message string `json:"message"`
				} `json:"error"`
			}
			_ = json.Unmarshal(b, &e)
			return Evaluation{}, fmt.Errorf("the pseudonym service answered %d %s: %s", resp.StatusCode, e.Error.Code, e.Error.Message)
		}
		var ev Evaluation
		if err := json.Unmarshal(b, &ev); err != nil {
			return Evaluation{}, fmt.Errorf("the pseudonym service's answer: %w", err)
		}
		return ev, nil
	}
}
