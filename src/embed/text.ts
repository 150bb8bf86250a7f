/**
 * The form of a text that the exact level keys on and the model is sent: Unicode NFC (the same
 * characters, composed one way), CR and CRLF line ends as LF, no leading or trailing whitespace.
 * None of these changes what a text says, and sending the normalised form means a cached vector
 * is exactly what the model returns for every text of that form. Case, inner spacing and
 * punctuation are kept: models see them (the semantic level is the looser one). A text of only
 * whitespace stays as it is: some providers refuse an empty input.
 */
export function normalizeEmbedText(text: string): string {
  const normal = text.normalize('NFC').replace(/\r\n?/g, '\n').trim();
  return normal === '' ? text : normal;
}
