package bridge

// Reword returns err with text as its message and err still in its chain
// (errors.Is and errors.As see through it): for hiding secrets in error
// text without losing what the error means.
func Reword(err error, text string) error {
	if err == nil || text == err.Error() {
		return err
	}
	return &rewordedError{text: text, err: err}
}

type rewordedError struct {
	text string
	err  error
}

func (e *rewordedError) Error() string { return e.text }
func (e *rewordedError) Unwrap() error { return e.err }
