"""Form-based indicators: templates, agency submissions, their versions, and the values they give."""
