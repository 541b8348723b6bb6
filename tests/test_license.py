"""The LICENSE is the Apache License 2.0 that setup.py declares, whole, and the wheel carries it."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

#: The nine sections of the Apache License 2.0's terms and conditions, in order.
SECTIONS = ('Definitions', 'Grant of Copyright License', 'Grant of Patent License', 'Redistribution',
            'Submission of Contributions', 'Trademarks', 'Disclaimer of Warranty', 'Limitation of Liability',
            'Accepting Warranty or Additional Liability')


def test_license_is_the_whole_apache_2_0_that_setup_py_declares():
    assert "license='Apache-2.0'" in (ROOT / 'setup.py').read_text()
    text = (ROOT / 'LICENSE').read_text()
    assert re.search(r'Apache License\s+Version 2\.0, January 2004\s+http://www\.apache\.org/licenses/', text)
    found = re.findall(r'^\s+(\d)\. ([A-Z][\w ]+?)\.', text, flags=re.M)
    assert [(int(number), title) for number, title in found][:9] == list(enumerate(SECTIONS, start=1))
    assert text.rstrip().endswith('limitations under the License.')
