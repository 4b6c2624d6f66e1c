"""d2l-zh 2.2 (数据预处理) as printed, through Jupyter's own machinery: the book's pandas
code, which pandas 2 refuses (fillna of a mean over a text column) and the book's
compatibility pin (pandas 1.5.3) runs."""

from pathlib import Path

import nbformat
from nbclient import NotebookClient

cells = [
    "import os\n\nos.makedirs(os.path.join('..', 'data'), exist_ok=True)\n"
    "data_file = os.path.join('..', 'data', 'house_tiny.csv')\n"
    "with open(data_file, 'w') as f:\n"
    "    f.write('NumRooms,Alley,Price\\n')  # 列名\n"
    "    f.write('NA,Pave,127500\\n')  # 每行表示一个数据样本\n"
    "    f.write('2,NA,106000\\n')\n"
    "    f.write('4,NA,178100\\n')\n"
    "    f.write('NA,NA,140000\\n')",
    "# 如果没有安装pandas，只需取消对以下行的注释来安装pandas\n# !pip install pandas\n"
    "import pandas as pd\n\ndata = pd.read_csv(data_file)\nprint(data)",
    "inputs, outputs = data.iloc[:, 0:2], data.iloc[:, 2]\n"
    "inputs = inputs.fillna(inputs.mean())\nprint(inputs)",
    "inputs = pd.get_dummies(inputs, dummy_na=True)\nprint(inputs)",
    "import torch\n\nX, y = torch.tensor(inputs.values), torch.tensor(outputs.values)\nX, y",
    "assert X.shape == (4, 3) and y.shape == (4,)\nprint('d2l-zh 2.2 ran as printed')",
]
nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
chapter = Path.cwd() / "chapter_preliminaries"
chapter.mkdir(exist_ok=True)
NotebookClient(nb, timeout=300, kernel_name="python3",
               resources={"metadata": {"path": str(chapter)}}).execute()
text = "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))
assert "d2l-zh 2.2 ran as printed" in text, text
assert Path("/data/house_tiny.csv").exists(), "../data is not the shared data folder"
Path("/data/house_tiny.csv").unlink()
print("d2l-zh 2.2 check passed")
